"""OpenAI-style API errors: one exception type carrying the HTTP status and the error body."""

from __future__ import annotations

__all__ = ["APIError", "error_body", "bad_request"]


class APIError(Exception):
    """An error answered to the client as ``{"error": {"message", "type", "param", "code"}}``.

    Parameters
    ----------
    status : int
        HTTP status code (400, 401, 404, 503, 504, ...).
    message : str
        What is wrong, in one sentence the caller can act on.
    type : str, default="invalid_request_error"
        OpenAI error type.
    param : str or None
        The request field at fault.
    code : str or None
        A short machine-readable code.
    """

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = int(status)
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        """The JSON body of the error response."""
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 ``invalid_request_error``."""
    return APIError(400, message, param=param, code=code)
