"""A Temporal ``PayloadCodec`` that seals and opens payloads through a temporal-codec-server.

Add it to the client's data converter; workers created from that client inherit it::

    codec = RemotePayloadCodec("https://codec.example.com", "payments", token_file=TOKEN)
    converter = dataclasses.replace(temporalio.converter.default(), payload_codec=codec)
    client = await Client.connect("temporal:7233", namespace="payments", data_converter=converter)
"""

from ._codec import SEALED_ENCODING, RemotePayloadCodec
from ._errors import (
    CodecBadRequest,
    CodecError,
    CodecForbidden,
    CodecResponseError,
    CodecTokenError,
    CodecUnauthorized,
    CodecUnavailable,
)
from ._tokens import TokenProvider
from ._version import __version__

__all__ = [
    "SEALED_ENCODING",
    "CodecBadRequest",
    "CodecError",
    "CodecForbidden",
    "CodecResponseError",
    "CodecTokenError",
    "CodecUnauthorized",
    "CodecUnavailable",
    "RemotePayloadCodec",
    "TokenProvider",
    "__version__",
]
