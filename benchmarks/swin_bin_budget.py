"""How many attention bins best-fit decreasing needs, against the lower bound ⌈tokens / window area⌉, the rule
budget (`bin_budget`) and the budget calibrated on 16 example batches (`SwinPlanner.calibrated`), which the sparse
Swin pads every packing to so that the step's shapes do not depend on the mask.

    python benchmarks/swin_bin_budget.py [--masks 200] [--batches 8,32,128] [--sizes 64,96,224]

For each input size, batch size, mask generator and ratio, packs `--masks` masks (other seeds than the
calibration's) and prints per stage and window shift: the most bins over the lower bound, and how many masks
needed more bins than the rule budget and than the calibrated budget (either would change the step's shapes
once: `pack_windows` then pads to the next multiple of 16 bins).
"""

import argparse

import torch

from hiermae.backbones.swin import SwinEncoder, SwinPlanner
from hiermae.backbones.swin_windows import bin_budget
from hiermae.utils.registry import MASK_GENERATORS


def rule_budget(tokens: int, packing_grid: tuple[int, int], padded: tuple[int, int], batch: int) -> int:
    padding = batch * (padded[0] * padded[1] - packing_grid[0] * packing_grid[1])
    return bin_budget(tokens + padding, 49)


def tally(planner: SwinPlanner, generator: object, batch: int, grid: tuple[int, int], masks: int) -> dict:
    """Per (stage, shift): [most bins over the lower bound, masks over the rule budget, over the calibrated one]."""
    examples = [generator(batch, grid, torch.arange(batch) + 10**6 + k * batch) for k in range(16)]
    calibrated = planner.calibrated(examples)
    exact = SwinPlanner(planner.unit, planner.stages, planner.position_index, exact=True,
                        share_masks=calibrated.share_masks)  # fmt: skip
    found: dict[tuple, list[int]] = {}
    for trial in range(masks):
        visible = generator(batch, grid, torch.arange(batch) + trial * batch)
        for number, plan in enumerate(exact(visible)):
            for packing in plan.packings:
                geometry = packing.geometry
                samples = packing.samples
                tokens = len(plan.sites.batch) // samples
                lower = -(-tokens // geometry.window_area)
                rule = rule_budget(tokens, geometry.grid, geometry.padded_grid, plan.sites.shape[0] // samples)
                budget = calibrated.budgets[(number, geometry)]
                row = found.setdefault((number, geometry.shift[0]), [0, 0, 0])
                row[0] = max(row[0], packing.num_bins - lower)
                row[1] += packing.num_bins > rule
                row[2] += packing.num_bins > budget
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--masks", type=int, default=200)
    parser.add_argument("--batches", default="8,32,128")
    parser.add_argument("--sizes", default="64,96,224")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| input | batch | mask | stage, shift | most bins over lower bound | over rule budget | over calibrated |")
    print("|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        planner = SwinEncoder("swin_tiny_patch4_window7_224", input_size=size).planner("cpu")
        grid = (size // 32, size // 32)
        for batch in (int(b) for b in args.batches.split(",")):
            for mask in ("random 0.6", "random 0.75", "blockwise 0.6", "uniform 0.75", "batch_shared 0.75"):
                kind, ratio = mask.split()
                if kind == "uniform" and grid[0] % 2:
                    continue
                generator = MASK_GENERATORS.build({"type": kind, "mask_ratio": float(ratio)})
                for (stage, shift), (over, rule, calibrated) in tally(planner, generator, batch, grid,
                                                                      args.masks).items():
                    print(f"| {size} | {batch} | {mask} | {stage}, {shift} | {over} | {rule}/{args.masks} "
                          f"| {calibrated}/{args.masks} |", flush=True)


if __name__ == "__main__":
    main()
