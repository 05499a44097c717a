"""Where the bearer token comes from: a fixed string, a callable, or a file that rotates.

A projected Kubernetes service-account token is a file the kubelet replaces (atomically, by
swapping the ``..data`` symlink) well before it expires. The file is therefore stat-ed before every
request and re-read when its inode, device, size or modification time changed; between changes the
token is served from memory.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable

from ._errors import CodecTokenError

#: A token provider: called before every request; may be a plain function or a coroutine function.
TokenProvider = Callable[[], str | Awaitable[str]]


def _checked(token: object, source: str) -> str:
    if not isinstance(token, str):
        raise CodecTokenError(f"{source} did not give a string (got {type(token).__name__})")
    token = token.strip()
    if not token:
        raise CodecTokenError(f"{source} gave an empty token")
    if any(c in token for c in "\r\n\x00"):
        raise CodecTokenError(f"{source} gave a token with a line break or NUL")
    return token


class TokenSource:
    """Where the token comes from; ``None`` means no ``Authorization`` header."""

    async def get(self) -> str | None:
        raise NotImplementedError

    def invalidate(self) -> bool:
        """Forget a cached token after a 401; True when a retry could use a different token."""
        return False


class NoToken(TokenSource):
    async def get(self) -> str | None:
        return None


class StaticToken(TokenSource):
    def __init__(self, token: str) -> None:
        self._token = _checked(token, "token")

    async def get(self) -> str | None:
        return self._token


class CallableToken(TokenSource):
    def __init__(self, provider: TokenProvider) -> None:
        self._provider = provider

    async def get(self) -> str | None:
        try:
            value = self._provider()
            if inspect.isawaitable(value):
                value = await value
        except CodecTokenError:
            raise
        except Exception as e:
            # The provider's own message is not copied: it could hold a secret.
            raise CodecTokenError(f"token provider raised {type(e).__name__}") from None
        return _checked(value, "token provider")


class FileToken(TokenSource):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._stamp: tuple[int, int, int, int] | None = None
        self._token: str | None = None

    async def get(self) -> str | None:
        # A stat (and, rarely, a read of a file of a few KiB) is cheaper than a thread hop.
        return self._current()

    def _current(self) -> str:
        try:
            st = os.stat(self._path)  # follows the ..data symlink of a projected volume
        except OSError as e:
            raise CodecTokenError(
                f"token file {self._path!r} cannot be read ({type(e).__name__})"
            ) from None
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self._token is None or stamp != self._stamp:
            try:
                with open(self._path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise CodecTokenError(
                    f"token file {self._path!r} cannot be read ({type(e).__name__})"
                ) from None
            self._token = _checked(text, f"token file {self._path!r}")
            self._stamp = stamp
        return self._token

    def invalidate(self) -> bool:
        # A rewrite within the same mtime tick with the same size is invisible to stat: after a
        # 401, read the file again once.
        had = self._token is not None
        self._token = None
        self._stamp = None
        return had


def token_source(
    token: str | TokenProvider | None, token_file: str | os.PathLike[str] | None
) -> TokenSource:
    if token is not None and token_file is not None:
        raise ValueError("pass either token or token_file, not both")
    if token_file is not None:
        return FileToken(token_file)
    if token is None:
        return NoToken()
    if isinstance(token, str):
        return StaticToken(token)
    if callable(token):
        return CallableToken(token)
    raise TypeError("token must be a str or a callable returning one")
