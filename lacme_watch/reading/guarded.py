"""The hostile-file layer under every read: a path resolved to its real target first,
every guard applied to that target (a private key's name, the store's roots), then
`lstat`ed and opened with O_NOFOLLOW, checked again by inode, read at its size and
capped. Every directory and file looked at joins the scan's stat record, and so does
every symlink on the way to a file.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

from ..observations import Problem
from ..options import Options
from .statrecord import Recorder, record_identity

DEFAULT_MAX_FILE_SIZE = 4 * 1024 * 1024

# mykey.pem, server+key.pem, ssh's id_ecdsa, PKCS#12 and Java key stores ...
_KEY_FILE_NAME = re.compile(
    r"(^|[._+@-]|my)(priv(ate)?[._+-]?)?key([._+@-]|\d|$)"
    r"|\.key$|^id_(rsa|dsa|ecdsa|ed25519)([._-]|$)|\.(p12|pfx|jks|keystore|ppk)$",
    re.IGNORECASE,
)

Identity = tuple[int, int, int, int]
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
FOLLOW_SYMLINKS = ("inside", "any")


def looks_like_private_key(path: str | Path) -> bool:
    """True for file names that ACME clients and CAs give private keys; those are never opened."""
    text = os.fspath(path)
    name = text[text.rfind("/") + 1 :]  # os.path.basename, without its generic steps
    if name.isascii():  # every key name holds one of these, in any case: most names none
        lowered = name.lower()
        if (
            "key" not in lowered
            and not lowered.startswith("id_")
            and not lowered.endswith(_KEY_SUFFIXES)
        ):
            return False
    return bool(_KEY_FILE_NAME.search(name))


_KEY_SUFFIXES = (".p12", ".pfx", ".jks", ".ppk")
"""With `key` (.key, .keystore, privkey ...) and `id_`: what _KEY_FILE_NAME can match."""


def follows_any_symlink(options: Options) -> bool:
    """A store's `follow_symlinks`: `inside` (default) keeps every read inside its root."""
    return options.choice("follow_symlinks", FOLLOW_SYMLINKS, "inside") == "any"


def printable(text: str) -> str:
    """A path or name as UTF-8-safe text: undecodable bytes shown as `\\udcff` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def undecodable_name(path: str, lineage: str | None = None) -> Problem | None:
    """A Problem for a file name that is not UTF-8 (it could be neither stored nor shown)."""
    if path.isascii() and (lineage is None or lineage.isascii()):
        return None  # the common case, checked in constant time
    if printable(path) == path and (lineage is None or printable(lineage) == lineage):
        return None
    return Problem(
        printable(path),
        "bad_file_name",
        "the name is not UTF-8: rename it",
        lineage=printable(lineage or path),
    )


def stored_lineage(lineage: str) -> str:
    """A lineage as the state database can hold it: one whose name is not UTF-8 is the
    one its `bad_file_name` problem names (a partial scan's `covered` set)."""
    unreadable = undecodable_name(lineage)
    return lineage if unreadable is None or unreadable.lineage is None else unreadable.lineage


class GuardedReads:
    """Confinement to a store's roots and guarded reads, for one source's scan."""

    def __init__(self, *, max_file_size: int = DEFAULT_MAX_FILE_SIZE) -> None:
        self.max_file_size = max_file_size
        self.roots: tuple[str, ...] = ()
        self.follow_any = False
        self._real_directories: dict[str, str] = {}
        self._prefixes: tuple[str, ...] = ()
        self.stat_record = Recorder()
        """Every directory and file this scan looked at (see statrecord.py)."""
        self._recorded: set[str] = set()
        """Directories already in the stat record: each is recorded once."""
        self._record_roots = True

    def confine(self, *roots: str, follow_any: bool = False, record_roots: bool = True) -> None:
        """Keep every read inside these directories (resolved): a symlink whose target
        leaves them is `outside_store`, unless the store says `follow_symlinks: any`.
        Without `record_roots`, a root passed through on the way to a file is not in the
        stat record (certbot's config directory, where every run leaves a lock file):
        the store lists what it needs of it itself (will_list)."""
        self.roots = tuple(os.path.realpath(root) for root in roots)
        self.follow_any = follow_any
        self._record_roots = record_roots
        self._prefixes = tuple(root.rstrip(os.sep) + os.sep for root in self.roots)
        self.stat_record.root(os.path.commonpath(self.roots) if self.roots else "")

    def will_list(self, directory: str) -> None:
        """Call before listing a directory (or asking whether a file is in it) yourself:
        it joins the stat record, so a file added to it makes the next pass scan again."""
        if directory in self._recorded:
            return  # already in the record, from an earlier (so stricter) lstat
        try:
            status = os.lstat(directory)
        except OSError:
            self.stat_record.distrust()  # a store root that is not there: nothing to compare
            return
        self._recorded.add(directory)
        self.stat_record.saw(directory, status)

    def forget_directories(self) -> None:
        """Drop the directories resolved so far but those that hold others (the store's
        root, lacme's certs/): a first pass in slices reads each certificate directory
        in one slice, and 100,000 of them need not be remembered to the end."""
        resolved = self._real_directories
        parents = {os.path.dirname(directory) for directory in resolved}
        self._real_directories = {
            directory: real for directory, real in resolved.items() if directory in parents
        }
        self._recorded = {  # those listed (will_list) stay, whatever their depth
            directory
            for directory in self._recorded
            if directory in parents or directory not in resolved
        }

    def stat_record_bytes(self) -> bytearray | None:
        """This scan's stat record as kept (None: the next pass must read in full)."""
        return self.stat_record.record()

    def inside(self, real_path: str) -> bool:
        """Whether a resolved path is within the store's roots (or confinement is off)."""
        if self.follow_any or not self.roots:
            return True
        return real_path.startswith(self._prefixes) or real_path in self.roots

    def _locate(self, path: str) -> tuple[str, os.stat_result] | Problem:
        """The real file behind `path` and its status, once every guard passed on it.

        Guards look at the target, not the link: a `cert.pem` that resolves to
        `privkey.pem`, or to `/etc/shadow` outside the store, is never opened.
        """
        if unreadable := undecodable_name(path):
            return unreadable
        target = self._target(path)
        try:
            status = os.lstat(target)
        except OSError as exc:
            return problem_from_os_error(path, exc)
        linked = stat.S_ISLNK(status.st_mode)
        if linked:
            try:
                target = self._follow(target, status)
                status = os.stat(target)
            except OSError as exc:
                self.stat_record.distrust()  # a broken link: where it leads is not recorded
                return problem_from_os_error(path, exc)
        self.stat_record.saw(target, status, linked=linked)
        if target != path and looks_like_private_key(target):
            return Problem(
                path,
                "no_certificate_found",
                f"resolves to {printable(target)}, named like a private key: not opened",
            )
        if not self.inside(target):
            return Problem(
                path,
                "outside_store",
                f"resolves to {printable(target)}, outside {', '.join(self.roots)}:"
                " not followed (set follow_symlinks: any on this store to read it)",
            )
        return target, status

    def _follow(self, link: str, status: os.stat_result) -> str:
        """Where the symlink `link` (in a real directory) leads, realpath's answer. It
        and every symlink on its way join the stat record, each as lstat says: while
        none was replaced and the file is the same, the path leads to the same file.
        Where the walk cannot finish (a loop, a part missing or unreadable), realpath
        says where it leads, and the record is not trusted."""
        hops = [(link, status)]
        try:
            reached = _walk(os.path.dirname(link), os.readlink(link), hops)
        except OSError:
            reached = None
        if reached is None:
            self.stat_record.distrust()
            return os.path.realpath(link)
        for hop, hop_status in hops:
            self.stat_record.saw_link(hop, hop_status)
        return reached

    def _target(self, path: str) -> str:
        """The path with its directory resolved: os.path.join(real parent, name)."""
        parent, slash, name = path.rpartition("/")
        if parent and name and parent[-1] != "/":  # what os.path.split and join do here
            real = self._real_directory(parent)
            return real + name if real == "/" else real + slash + name
        parent, name = os.path.split(path)  # at the root, or repeated or trailing slashes
        return os.path.join(self._real_directory(parent), name)

    def _real_directory(self, directory: str) -> str:
        """realpath(directory), remembered per directory for this scan: a store of many
        directories costs one lstat per directory, not one per path component."""
        real = self._real_directories.get(directory)
        if real is None:
            parent, name = os.path.split(directory)
            if name in ("", ".", "..") or not parent or parent == directory:
                real = os.path.realpath(directory)
            else:
                candidate = os.path.join(self._real_directory(parent), name)
                real = self._resolved_directory(candidate)
            self._real_directories[directory] = real
        return real

    def _resolved_directory(self, candidate: str) -> str:
        """A directory's real path; one inside the store joins the stat record (its
        files are looked for by name: one created there changes its mtime)."""
        try:
            status = os.lstat(candidate)
        except OSError:
            return candidate  # the file's own lstat reports what is missing
        if stat.S_ISLNK(status.st_mode):
            self.stat_record.distrust()  # re-pointed, it would lead the same names elsewhere
            return os.path.realpath(candidate)
        if (
            self._in_roots(candidate)
            and candidate not in self._recorded
            and (self._record_roots or candidate not in self.roots)
        ):
            self._recorded.add(candidate)
            self.stat_record.saw(candidate, status)
        return candidate

    def _in_roots(self, directory: str) -> bool:
        """Within the store's roots, whatever follow_symlinks says: a directory above
        them is only passed through by name (a different one there is a different file
        at the end of the path, which its own lstat shows), and /, /etc or /tmp change
        far too often to stand in the record."""
        return not self.roots or directory.startswith(self._prefixes) or directory in self.roots

    def _read(self, path: str) -> tuple[bytes, Identity] | Problem:
        located = self._locate(path)
        if isinstance(located, Problem):
            return located
        return self._read_at(path, *located)

    def _read_at(
        self, path: str, target: str, checked: os.stat_result
    ) -> tuple[bytes, Identity] | Problem:
        """The checked target's bytes (at most max_file_size) and the identity they were
        read at. O_NOFOLLOW and the inode comparison close the race with a swapped file."""
        if not stat.S_ISREG(checked.st_mode):
            return Problem(path, "no_certificate_found", "not a regular file")
        try:
            fd = os.open(target, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # the target was checked: it became a link since
                return Problem(path, "io_error", "replaced by a symlink while being read")
            return problem_from_os_error(path, exc)
        try:
            status = os.fstat(fd)
            if (status.st_dev, status.st_ino) != (checked.st_dev, checked.st_ino):
                return Problem(path, "io_error", "replaced while being read")
            if not stat.S_ISREG(status.st_mode):
                return Problem(path, "no_certificate_found", "not a regular file")
            if status.st_size > self.max_file_size:
                return Problem(path, "too_large", f"{status.st_size} bytes > {self.max_file_size}")
            content = _read_fd(fd, status.st_size, self.max_file_size)
            if record_identity(status) != record_identity(checked):
                self.stat_record.distrust()
        except OSError as exc:
            return problem_from_os_error(path, exc)
        finally:
            os.close(fd)
        if len(content) > self.max_file_size:
            return Problem(path, "too_large", f"more than {self.max_file_size} bytes")
        return content, identity_of(status)


_MAX_LINKS = 40
"""Symlinks followed on one path's way before the walk gives up (Linux's own limit)."""


def _walk(base: str, rest: str, hops: list[tuple[str, os.stat_result]]) -> str | None:
    """`rest` resolved from the real directory `base` as realpath() resolves it, each
    symlink met appended to `hops` with its lstat; None past _MAX_LINKS links. `base`
    stays a real path throughout, so `..` is its parent."""
    if rest.startswith("/"):
        base = "/"
    for name in rest.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            base = os.path.dirname(base)
            continue
        candidate = base + name if base.endswith("/") else f"{base}/{name}"
        status = os.lstat(candidate)
        if stat.S_ISLNK(status.st_mode):
            if len(hops) >= _MAX_LINKS:
                return None
            hops.append((candidate, status))
            reached = _walk(base, os.readlink(candidate), hops)
            if reached is None:
                return None
            candidate = reached
        base = candidate
    return base


def _read_fd(fd: int, size: int, cap: int) -> bytes:
    """The file's bytes, at most cap + 1 of them (the caller refuses more than cap).

    It asks for the size fstat gave, plus one to see a file that grew, not for the cap:
    a 4 MiB buffer per file costs more than reading a certificate. os.read straight
    from the descriptor: a buffered file object around it costs more than the read."""
    wanted = size + 1
    chunks: list[bytes] = []
    total = 0
    while total < wanted:  # a regular file gives it all at once; a short read asks again
        chunk = os.read(fd, wanted - total)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
    while total <= cap:  # it grew while we read: up to the cap, as before
        chunk = os.read(fd, cap + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def problem_from_os_error(path: str, exc: OSError) -> Problem:
    if exc.errno == errno.ELOOP:
        return Problem(path, "broken_symlink", "symlink loop")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            return Problem(path, "broken_symlink", f"points to missing {os.readlink(path)}")
        return Problem(path, "not_found")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return Problem(path, "permission_denied")
    return Problem(path, "io_error", exc.strerror or str(exc))


def identity_of(status: os.stat_result) -> Identity:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
