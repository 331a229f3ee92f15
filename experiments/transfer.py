"""One evaluation step of a comparison: kNN, linear probe and fine-tuning of one encoder, into one JSON file.

    python -m experiments.transfer [CKPT] --backbone NAME --input-size S --evaluation JSON --seed N
                                       --work-dir D --json FILE

CKPT is a pretraining checkpoint; without it, random init of the backbone is evaluated. JSON is a
`runs.Evaluation` (protocols, low-label subset, fine-tuning recipe). Run as its own process by the comparison, so
each evaluation gets a fresh heap and its share of the cores; the fine-tuning curve lands in D/finetune/curve.json.
"""

import argparse
from pathlib import Path

from experiments.runs import Evaluation
from hiermae.downstream.classification import evaluate
from hiermae.utils import write_json


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="pretraining checkpoint; omit for random init")
    parser.add_argument("--backbone", required=True)
    parser.add_argument("--input-size", type=int, required=True)
    parser.add_argument("--evaluation", required=True, help="runs.Evaluation as JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--json", required=True, help="where {protocol: top-1} goes")
    args = parser.parse_args(argv)
    evaluation = Evaluation.from_json(args.evaluation)
    results = evaluate(
        args.checkpoint, backbone=args.backbone, input_size=args.input_size, protocols=evaluation.protocols,
        train_limit=evaluation.train_limit, test_limit=evaluation.test_limit, labelled=evaluation.labelled,
        evaluate_on=evaluation.evaluate_on, work_dir=args.work_dir, linear_epochs=evaluation.linear_epochs,
        recipe=evaluation.finetune, seed=args.seed,
    )  # fmt: skip
    print(results)
    write_json(Path(args.json), results)


if __name__ == "__main__":
    main()
