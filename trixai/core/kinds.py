"""Task kinds: one class per image (multiclass, softmax) or independent labels (multilabel, sigmoid)."""

TASKS = ("multiclass", "multilabel")
