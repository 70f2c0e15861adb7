"""Reading and checking form fields (the browser checks too; the server decides)."""

from __future__ import annotations

import re
from urllib.parse import unquote

from flask import request

from mydrive.errors import BadRequest

MIN_PASSPHRASE_CHARS = 8
MAX_PASSPHRASE_CHARS = 1024
MAX_FIELD_CHARS = 4096


class FormError(BadRequest):
    """A form field is missing or wrong; ``field`` names it so the page can point at it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def text(name: str, *, max_chars: int = MAX_FIELD_CHARS, required: bool = True) -> str:
    value = request.form.get(name, "")
    if len(value) > max_chars:
        raise FormError(name, f"{name.replace('_', ' ')} is longer than {max_chars} "
                              f"characters")
    if required and not value.strip():
        raise FormError(name, f"please fill in the {name.replace('_', ' ')}")
    return value


def new_passphrase(field: str, confirm_field: str) -> str:
    """The new passphrase, if it is long enough and its confirmation matches."""
    value = text(field, max_chars=MAX_PASSPHRASE_CHARS)
    confirm = text(confirm_field, max_chars=MAX_PASSPHRASE_CHARS, required=False)
    if len(value) < MIN_PASSPHRASE_CHARS:
        raise FormError(field, f"the passphrase needs at least {MIN_PASSPHRASE_CHARS} "
                               f"characters; several words are best")
    if value != confirm:
        raise FormError(confirm_field, "the passphrase and its confirmation differ")
    return value


def local_next(raw: str | None, default: str = "/files") -> str:
    """A redirect target from the request: only a path on this site, else ``default``.

    Browsers drop tabs and newlines from a Location and read a backslash as a slash, so
    ``/\t/evil.example`` or ``/\\evil.example`` would leave the site. Only printable ASCII
    without backslash, space or quote, starting with exactly one slash, passes; and once
    percent-decoded it must still start so, in case anything decodes it again.
    """
    if raw and len(raw) <= MAX_NEXT_CHARS and _LOCAL_PATH.fullmatch(raw) \
            and _LOCAL_START.match(re.sub(r"[\t\n\r]", "", unquote(raw))):
        return raw
    return default


MAX_NEXT_CHARS = 512
_LOCAL_PATH = re.compile(r"/(?![/\\])[!#-\[\]-~]*")  # then 0x21-0x7e except quote, backslash
_LOCAL_START = re.compile(r"/(?![/\\\s])")
