"""IMU personalisation on the device: accuracy tables for every method mcutl compiles.

TinyIMU1D (a 1-D conv net, int8) pre-trained on seglearn's smartwatch exercises (6-axis
wrist IMU, 7 exercises, 10 subjects, decimated to 10 Hz, 10 s windows) learns the four
activities of UEA BasicMotions (another smartwatch: standing, running, walking,
badminton) on the device, from k = 1 or 5 recordings per class (BasicMotions has 10 per
class for training), with a new head. Each set is standardised per channel on its own
training data (their accelerometer units differ). Test: BasicMotions' 40 test recordings.

`python examples/imu_personalization/run.py` (a few minutes on 2 cores) writes
results.md, results.json and results.png here. examples/transfer_table.py says how the
runs are made.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from examples.data import load_basic_motions, standardise  # noqa: E402
from examples.pretrain import pretrained, source_data  # noqa: E402
from examples.transfer_table import Task, cli  # noqa: E402

WATCH_EPOCHS = 15


def basic_motions() -> Task:
    model = pretrained("watch", WATCH_EPOCHS)
    calib = source_data("watch")[0][:200]
    x, y, xt, yt = load_basic_motions()
    x, stats = standardise(x)
    xt, _ = standardise(xt, stats)
    return Task("basic_motions", "smartwatch exercises -> BasicMotions (new activities, "
                "another watch)", model, 4, "new", calib, (1, 6, 100), x, y, xt, yt,
                ks=(1, 5), seeds=(0, 1, 2, 3, 4), source="seglearn watch")


def note(task: Task) -> str:
    return ("TinyIMU1D (1-D convs, int8) pre-trained on 7 smartwatch exercises; the device "
            "learns BasicMotions' 4 activities with a new head. BasicMotions has 10 "
            "training recordings per class, so k = 1 and 5 (not 20); its test set is 40 "
            "recordings (one is 2.5 points).")


def main(argv: list[str] | None = None) -> int:
    return cli("Accuracy tables: IMU personalisation on the device.",
               Path(__file__).resolve(), lambda: [basic_motions()], note, argv)


if __name__ == "__main__":
    sys.exit(main())
