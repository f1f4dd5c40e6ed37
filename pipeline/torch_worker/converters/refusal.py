"""A converter's refusal: a node whose form no TF graph produces and torch has no way to run."""


class NotConvertible(NotImplementedError):
    """Raised by a converter for a node it declines on purpose, with the reason a person can act on.
    The import stage reports it as an unsupported op; the import sweep records it as refused."""
