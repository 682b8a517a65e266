"""An upload streamed from the request straight into one file of its own folder.

Starlette's form parsing spools every upload to a temporary file before the endpoint runs,
so the service used to hold two copies of each queued upload. Here the multipart body is
parsed as it arrives and the audio written once, into a folder the caller removes, and
only after the request has been admitted: a refused request never touches the disk. Disk
writes run in a thread, so a slow disk never holds up the event loop (and /health).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

UPLOAD_FIELD = "file"
TEXT_FIELD = "text"
MAX_TEXT_BYTES = 65536  # a transcript; anything longer is not one
_MAX_HEADER_BYTES = 8192
_MISSING = f"form field '{UPLOAD_FIELD}' (the audio, sent as multipart/form-data) is missing"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")  # kept on the server's copy: a hint for FFmpeg


class UploadError(Exception):
    """A request that is not the form the service takes: ``str(error)`` says what is wrong."""


@dataclass(frozen=True)
class Upload:
    """The audio written to ``path``; ``name`` is the client's file name, on one line."""

    path: Path
    name: str
    text: str | None


async def receive_upload(request: Request, folder: Path) -> Upload:
    """Parse the multipart form of ``request`` into ``folder`` (which must exist)."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise UploadError(_MISSING)
    form = _Form(folder)
    parser = MultipartParser(options[b"boundary"], form.callbacks())
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                await anyio.to_thread.run_sync(form.flush)
            parser.finalize()
            await anyio.to_thread.run_sync(form.flush)
        except FormParserError:
            raise UploadError("the request body is not valid multipart/form-data") from None
    finally:
        form.close()
    if form.path is None:
        raise UploadError(_MISSING)
    text = bytes(form.text).decode("utf-8", errors="replace") if form.text is not None else None
    return Upload(form.path, form.name, text)


class _Form:
    """Callbacks of the multipart parser: the audio part goes to disk (by :meth:`flush`),
    the text to memory, anything else is dropped."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path: Path | None = None
        self.name = "upload"
        self.text: bytearray | None = None
        self._file = None
        self._pending: list[bytes] = []  # audio parsed but not yet written
        self._closing = False
        self._field = b""
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self._target: str | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._grow(self._header_name, data[start:end]),
            "on_header_value": lambda data, start, end: self._grow(self._header_value, data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def _grow(self, buffer: bytearray, data: bytes) -> None:
        if len(buffer) + len(data) > _MAX_HEADER_BYTES:
            raise UploadError("a multipart header is too long")
        buffer.extend(data)

    def _part_begin(self) -> None:
        self._disposition, self._target = b"", None

    def _header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        field = options.get(b"name", b"").decode("utf-8", errors="replace")
        if field == UPLOAD_FIELD:
            if self.path is not None:
                raise UploadError(f"the form holds more than one '{UPLOAD_FIELD}'")
            filename = options.get(b"filename", b"").decode("utf-8", errors="replace")
            self.name = " ".join(Path(filename.replace("\\", "/")).name.split()) or "upload"
            suffix = _SUFFIX.search(self.name)
            self.path = self.folder / f"upload{suffix.group() if suffix else ''}"
            self._target = UPLOAD_FIELD
        elif field == TEXT_FIELD:
            self.text = bytearray()
            self._target = TEXT_FIELD

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._target == UPLOAD_FIELD:
            self._pending.append(bytes(data[start:end]))
        elif self._target == TEXT_FIELD:
            if len(self.text) + end - start > MAX_TEXT_BYTES:
                raise UploadError(f"form field '{TEXT_FIELD}' is over {MAX_TEXT_BYTES // 1024} kB: not a transcript")
            self.text.extend(data[start:end])

    def _part_end(self) -> None:
        self._closing = self._closing or self._target == UPLOAD_FIELD
        self._target = None

    def flush(self) -> None:
        """Write what was parsed of the audio; close the file once its part has ended."""
        if self.path is None or (self._file is not None and self._file.closed):
            return
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed here at the part's end, or by close()
        self._file.writelines(self._pending)
        self._pending.clear()
        if self._closing:
            self._file.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
