import os

from PIL import Image

from hiermae.data.datasets import ImageFolder
from hiermae.data.file_list import list_images, walk


def tiny_png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), 128).save(path)


def names(listing):
    return [listing.names[i] for i in range(len(listing.names))]


def test_symlinked_class_folders_are_followed_and_loops_end(tmp_path):
    store, root = tmp_path / "store", tmp_path / "train"
    tiny_png(store / "n01" / "a.png")
    tiny_png(store / "n02" / "b.jpg")
    tiny_png(root / "n03" / "c.png")
    (root / "n01").symlink_to(store / "n01", target_is_directory=True)
    (root / "n02").symlink_to(store / "n02", target_is_directory=True)
    (root / "n03" / "loop").symlink_to(root, target_is_directory=True)  # back to the top: must not recurse forever
    (root / "again").symlink_to(store / "n01", target_is_directory=True)  # the same real folder a second time
    (root / "n03" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (root / "n03" / ".hidden.png").write_bytes(b"resource fork")
    (root / "n03" / "notes.txt").write_text("not an image")
    listing = walk(root)
    assert names(listing) in (["n01/a.png", "n02/b.jpg", "n03/c.png"], ["again/a.png", "n02/b.jpg", "n03/c.png"])
    assert listing.classes == tuple(sorted({name.split("/")[0] for name in names(listing)}))
    reasons = sorted(why for _, why in listing.problems)
    assert len(reasons) == 3 and reasons[0].startswith("folder already listed") and "broken link" in reasons[2]
    dataset = ImageFolder(str(root), image_size=32)  # a tree of only symlinked classes used to have "no images"
    assert len(dataset) == 3 and dataset.metainfo["classes"] == listing.classes


def test_flat_folder_has_no_classes(tmp_path):
    tiny_png(tmp_path / "x.png")
    tiny_png(tmp_path / "y.PNG")
    listing = walk(tmp_path)
    assert names(listing) == ["x.png", "y.PNG"] and listing.classes == () and list(listing.labels) == [-1, -1]


def test_the_cache_is_reused_until_a_folder_changes(tmp_path):
    root, cache = tmp_path / "images", tmp_path / "work" / "file_lists" / "train.bin"
    for index in range(5):
        tiny_png(root / f"class{index % 2}" / f"{index}.png")
    first = list_images(root, cache)
    assert first.source == "walked" and cache.exists()
    second = list_images(root, cache)
    assert second.source == f"cache {cache}" and names(second) == names(first)
    assert list(second.labels) == list(first.labels) and second.classes == first.classes
    tiny_png(root / "class1" / "new.png")
    third = list_images(root, cache)
    assert third.source == "walked" and "class1/new.png" in names(third)
    os.remove(root / "class0" / "0.png")
    assert "class0/0.png" not in names(list_images(root, cache))
    other = tmp_path / "other"
    tiny_png(other / "z.png")
    assert names(list_images(other, cache)) == ["z.png"]  # a cache of another root is not used


def test_a_damaged_cache_is_rebuilt(tmp_path):
    tiny_png(tmp_path / "images" / "a.png")
    cache = tmp_path / "list.bin"
    for content in (b"", b"{not json\n", b'{"format": 1}\n', b"\xff\xfe"):
        cache.write_bytes(content)
        listing = list_images(tmp_path / "images", cache)
        assert listing.source == "walked" and names(listing) == ["a.png"]
    header = cache.read_bytes().split(b"\n", 1)[0]
    cache.write_bytes(header + b"\nextra\0names")  # count no longer matches
    assert list_images(tmp_path / "images", cache).source == "walked"
