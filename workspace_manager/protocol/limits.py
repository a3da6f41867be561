"""The protocol's size limits, apart from the framing code: the launch plan names them
without importing msgpack (`wsm job execute` plans its run before that)."""

#: The largest frame either side accepts unless configured (bytes; a snapshot of thousands
#: of jobs fits many times over).
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
