"""A measurably worse model version, made from a good one in a second: some classes swapped.

The good model's graph is kept whole; a Gather after its `probabilities` output reorders them, so
the worse model is as confident as the good one and wrong on the swapped classes. Its confidence
still says 99%: only feedback can tell (ModelAccuracyDrop; ModelEstimationGap given time).
"""

import importlib.util
import shutil
from pathlib import Path
from typing import Any

from leafwatch.model.classifier import PROBABILITIES_OUTPUT
from leafwatch.model.labels import CLASS_NAMES
from leafwatch.model.registry import MODEL_FILE, REFERENCE_FILE, ModelVersionInfo
from leafwatch.simulate.scenarios import WORSE_MODEL_SWAPS, worse_permutation


class WorseModelUnavailable(Exception):
    """The worse model cannot be built here; the message says what to install."""


def require_onnx() -> None:
    """Raise WorseModelUnavailable, saying what to install, when onnx cannot be imported."""
    if importlib.util.find_spec("onnx") is None:
        raise WorseModelUnavailable(
            "the accuracy scenario edits an ONNX graph and needs the onnx package: "
            "pip install -e '.[simulate]' (or onnx>=1.16)"
        )


def write_worse_model(source: ModelVersionInfo, directory: Path) -> tuple[Path, dict[str, Any]]:
    """Write the worse model and the source's drift reference into `directory`; return its card."""
    require_onnx()
    # onnx is an optional extra, and heavy: imported only when a worse model is made.
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source.model_path))
    graph = model.graph
    original = f"{PROBABILITIES_OUTPUT}_before_swap"
    producers = [node for node in graph.node if PROBABILITIES_OUTPUT in node.output]
    if len(producers) != 1:
        raise WorseModelUnavailable(
            f"{source.model_path} has no single node producing {PROBABILITIES_OUTPUT!r}"
        )
    outputs = producers[0].output
    outputs[list(outputs).index(PROBABILITIES_OUTPUT)] = original
    order = numpy_helper.from_array(np.asarray(worse_permutation(), dtype=np.int64), "swap_order")
    graph.initializer.append(order)
    graph.node.append(
        helper.make_node("Gather", [original, "swap_order"], [PROBABILITIES_OUTPUT], axis=1)
    )
    onnx.checker.check_model(model)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILE
    onnx.save(model, str(path))
    reference = source.reference_path
    if reference.is_file():
        shutil.copyfile(reference, directory / REFERENCE_FILE)
    swaps = ", ".join(f"{CLASS_NAMES[a]}<->{CLASS_NAMES[b]}" for a, b in WORSE_MODEL_SWAPS)
    card = {
        key: value
        for key, value in source.card.items()
        if key not in ("version", "registered_at", "metrics", "name")
    }
    card["description"] = (
        f"Made by `leafwatch simulate` from version {source.version} with {swaps} swapped: "
        "a deliberately worse model for the accuracy scenario. Never serve it for real."
    )
    card["simulated_worse_model_of"] = source.version
    return path, card
