"""Reading and checking form fields (the browser checks too; the server decides)."""

from __future__ import annotations

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


def local_next(raw: str | None) -> str:
    """A redirect target after login: only a path on this site, else the file page."""
    if raw and raw.startswith("/") and not raw.startswith("//") and "\\" not in raw \
            and len(raw) <= 512:
        return raw
    return "/files"
