"""Errors of datasets that are the user's to fix; each names what is wrong."""


class DatasetError(ValueError):
    """A dataset that cannot be used as given (unknown name, a folder without
    class subfolders, ...); the message names it."""


class DatasetUnavailableError(RuntimeError):
    """A dataset that is neither prepared locally nor downloadable now."""
