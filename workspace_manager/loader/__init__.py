"""The loader: the child process that imports one location's code and serves it on a socket.

Runs inside the repository's own interpreter (any CPython >= 3.9): standard library only.
"""
