---@meta lunet.fs

--- Files, through libuv's thread pool: every function is async, and other
--- coroutines keep running while the pool does the work. Failures come back
--- as `nil, err` with libuv's text (`"no such file or directory"`), and so does
--- a missing or wrong path or descriptor (C lunet's
--- `"fs.read requires fd and length"`), or a path containing a NUL byte,
--- which is refused rather than cut short. A wrong `mode` type, length or
--- data is a programmer error and raises
--- (`bad argument #2 to 'fs.read' (number expected, got nil)`).
---
--- Descriptors are plain integers, but `read`, `write` and `close` accept only
--- the ones `fs.open` returned and that are still open; any other number gives
--- `"bad file descriptor"`, so a script cannot disturb descriptors the event
--- loop relies on. Meant for regular files: a read that never finishes (a FIFO
--- without a writer) keeps a pool thread busy until it does.
---@class lunet.fs
local fs = {}

--- Opens a file. `mode` is one of `r`, `r+`, `w`, `w+`, `a`, `a+`, `x`,
--- `x+`, as in C's `fopen` (`x` creates a file that must not exist yet); a
--- `b` after the letter is accepted and ignored. New files get mode 0644 minus
--- the umask. Errors include `"fs.open invalid mode"`,
--- `"fs.open requires path and mode"` (no usable path) and
--- `"file already exists"`; a `mode` that is not a string raises.
---@async
---@param path string the file's path
---@param mode string how to open it (`"r"`, `"w+"`, `"a"`, ...)
---@return integer|nil fd the descriptor, or nil on failure
---@return string|nil err why it failed
function fs.open(path, mode) end

--- Reads up to `n` bytes from the current position of `fd`, which then moves
--- past them. Returns `""` at the end of the file. One call reads at most
--- 16 MiB however large `n` is; loop until `""` for more. An `n` that is not
--- a number, or is negative or NaN, raises.
---@async
---@param fd integer a descriptor from `fs.open`
---@param n number how many bytes to read at most (0 or more)
---@return string|nil data the bytes read (`""` at end of file), or nil on failure
---@return string|nil err why it failed
function fs.read(fd, n) end

--- Writes all of `data` at the current position of `fd` (at the end for the
--- `a` modes), retrying short writes, and returns how many bytes that was.
--- Numbers are written as their string form; any other type raises.
---@async
---@param fd integer a descriptor from `fs.open`
---@param data string|number the bytes to write (any bytes, NULs included)
---@return number|nil written the number of bytes written, or nil on failure
---@return string|nil err why it failed
function fs.write(fd, data) end

--- Closes a descriptor, first waiting for reads and writes still running on
--- it. Returns a single value: `nil` when it worked, otherwise the error
--- message (`"bad file descriptor"` for a descriptor that is already closed
--- or was never opened by `fs.open`).
---@async
---@param fd integer a descriptor from `fs.open`
---@return string|nil err nil on success, otherwise the error message
function fs.close(fd) end

--- Information about the file at `path` (symbolic links are followed).
---@async
---@param path string the file's path
---@return lunet.fs.Stat|nil stat a table describing the file, or nil on failure
---@return string|nil err why it failed
function fs.stat(path) end

--- The entries of a directory, sorted by name, without `.` and `..`.
---@async
---@param path string the directory's path
---@return lunet.fs.DirEntry[]|nil entries one table per entry, or nil on failure
---@return string|nil err why it failed
function fs.scandir(path) end

--- What `fs.stat` returns. Every field but `type` is a number.
---@class lunet.fs.Stat
---@field size number size in bytes
---@field mode number type and permission bits, as in `st_mode`
---@field uid number owner's user id
---@field gid number owner's group id
---@field nlink number number of hard links
---@field ino number inode number
---@field dev number id of the device holding the file
---@field rdev number device id, for device files
---@field blksize number preferred I/O block size
---@field blocks number number of 512-byte blocks allocated
---@field atime number last access, in seconds since the epoch (with a fractional part)
---@field mtime number last modification, in seconds since the epoch (with a fractional part)
---@field ctime number last status change, in seconds since the epoch (with a fractional part)
---@field type "file"|"dir"|"link"|"fifo"|"socket"|"char"|"block"|"unknown" the kind of file

--- One entry of `fs.scandir`'s result.
---@class lunet.fs.DirEntry
---@field name string the entry's name (no directory part)
---@field type "file"|"dir"|"link"|"fifo"|"socket"|"char"|"block"|"unknown" the kind of entry, as the directory reports it

return fs
