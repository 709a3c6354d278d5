"""Wire-exact IOTMP + PSON protocol library (no Home Assistant imports).

Public API of the codecs:

* :class:`Message`, :class:`MessageType`, :class:`Field`, :class:`WireType`,
  :data:`ABSENT` -- the message model;
* :func:`encode_message`, :func:`decode_message`, :class:`MessageDecoder` --
  IOTMP framing;
* :mod:`.pson` / :mod:`.pson_legacy` -- ``encode`` / ``decode`` / ``decode_at``;
* :class:`Limits`, :data:`DEFAULT_LIMITS` and the exceptions of :mod:`.errors`.
"""

from __future__ import annotations

from . import errors, pson, pson_legacy
from .codec import MessageDecoder, decode_message, encode_message
from .errors import (
    AuthenticationError,
    ConnectionClosedError,
    IotmpError,
    ProtocolError,
    RemoteError,
    RequestTimeoutError,
)
from .limits import DEFAULT_LIMITS, Limits
from .message import ABSENT, Field, Message, MessageType, WireType

__all__ = [
    "ABSENT",
    "DEFAULT_LIMITS",
    "AuthenticationError",
    "ConnectionClosedError",
    "Field",
    "IotmpError",
    "Limits",
    "Message",
    "MessageDecoder",
    "MessageType",
    "ProtocolError",
    "RemoteError",
    "RequestTimeoutError",
    "WireType",
    "decode_message",
    "encode_message",
    "errors",
    "pson",
    "pson_legacy",
]

# --- transport / session / server resources ----------------------------------
from .server_resources import (
    ServerResource,
    ServerResourceCall,
    parse_server_resource,
)
from .session import (
    ConnectInfo,
    IncomingStream,
    Reply,
    Request,
    RequestHandler,
    Role,
    Session,
    SessionConfig,
    StreamHandle,
)
from .transport import (
    ProtocolTransport,
    Transport,
    WebSocketTransport,
    accept_websocket,
    open_tcp,
    open_websocket,
    start_tcp_server,
    websocket_handler,
)

__all__ += [
    "ConnectInfo",
    "IncomingStream",
    "ProtocolTransport",
    "Reply",
    "Request",
    "RequestHandler",
    "Role",
    "ServerResource",
    "ServerResourceCall",
    "Session",
    "SessionConfig",
    "StreamHandle",
    "Transport",
    "WebSocketTransport",
    "accept_websocket",
    "open_tcp",
    "open_websocket",
    "parse_server_resource",
    "start_tcp_server",
    "websocket_handler",
]
