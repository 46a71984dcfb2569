"""The classes the model predicts: healthy, and the six stages of Fouré's Black Sigatoka scale."""

CLASS_NAMES: tuple[str, ...] = (
    "Healthy",
    "Stage1",
    "Stage2",
    "Stage3",
    "Stage4",
    "Stage5",
    "Stage6",
)
NUM_CLASSES = len(CLASS_NAMES)


def class_id(name: str) -> int:
    """Return the id of a class name, raising ValueError for an unknown one."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise ValueError(
            f"unknown class {name!r}; expected one of {', '.join(CLASS_NAMES)}"
        ) from None
