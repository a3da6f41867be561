"""teamlib 1.0: the same package name as the other folder, another version and API."""

__version__ = "1.0"


def greeting(name):
    return "teamlib 1.0 says hello to " + name
