import importlib
import sys

import pytest
from mmengine.config import Config

from hiermae.downstream.export import registry_for
from hiermae.utils.dependencies import MissingDependencyError, is_installed, require_mmdet, require_transfer_stack


def test_is_installed_finds_modules_without_importing_them():
    assert is_installed("json") and is_installed("mmengine.config")
    assert not is_installed("no_such_package_xyz") and not is_installed("no_such_package_xyz.sub")


def test_a_missing_package_names_the_install_command():
    with pytest.raises(MissingDependencyError, match=r"the scenes needs no_such_package_xyz, .*make install-transfer"):
        require_transfer_stack("json", "no_such_package_xyz", purpose="the scenes")
    require_transfer_stack("json", purpose="nothing missing")


@pytest.fixture
def without_mmdet(monkeypatch):
    """This process as if mmdet were not installed: a None entry in sys.modules is how Python marks that."""
    monkeypatch.setitem(sys.modules, "mmdet", None)
    monkeypatch.delitem(sys.modules, "hiermae.downstream.mmdet_models", raising=False)


def test_detection_without_mmdet_says_which_command_installs_it(without_mmdet):
    with pytest.raises(MissingDependencyError, match=r"detection \(mmdet\) needs mmdet, .*make install-transfer"):
        require_mmdet()
    with pytest.raises(MissingDependencyError, match="make install-transfer"):
        importlib.import_module("hiermae.downstream.mmdet_models")
    with pytest.raises(MissingDependencyError, match=r"export to mmdet needs mmdet"):
        registry_for("mmdet")
    # through a detection config's custom_imports, not rewritten by mmengine into a PYTHONPATH message
    with pytest.raises(MissingDependencyError, match="make install-transfer"):
        Config.fromfile("configs/downstream/mask-rcnn_resnet18_fpn_scenes.py")
