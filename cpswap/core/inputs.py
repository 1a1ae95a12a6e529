"""The one set of input validators: stack config fields, executor arguments, files. Pure.

Every validator takes the raw value and returns the canonical one, or raises ``InputError`` whose
text is the rule (the caller names the field and the value). Patterns are matched with
``fullmatch`` (``re.match`` with ``$`` lets a trailing newline through). Addresses are canonical:
IPv6 in its compressed form, zone ids refused, and ``same_address`` compares ``::ffff:a.b.c.d``
equal to ``a.b.c.d``. ``host_port``/``url_host`` bracket IPv6 wherever a host meets a port.
"""
from __future__ import annotations

import functools
import ipaddress
import math
import re
from typing import Any, TypeVar
from collections.abc import Callable

from cpswap.core.errors import ConfigError, Violation

SHELL_META = frozenset(";&|$`\\\"'<>()*?[]{}!#~ \t\n\r")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
MEMBER_COUNTS = (3, 5, 7)
MAX_SECONDS = 7 * 24 * 3600.0  # a week: longer is a typo, not a wait
MAX_LAG = 10**9
IMAGE = re.compile(r"[a-z0-9][a-z0-9._:/-]*(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})")  # pinned: a tag or digest
_DIGITS = re.compile(r"[0-9]{1,10}")
_NUMBER = re.compile(r"[0-9]{1,10}(\.[0-9]{1,9})?")
_URL = re.compile(r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:(?P<port>[0-9]{1,5}))?/?")


class InputError(ValueError):
    """The value breaks the rule in the message."""


def dns_name(value: Any, *, what: str = "name") -> str:
    """A non-empty lowercase DNS-1123 subdomain (Kubernetes object and node names, etcd member names)."""
    if not isinstance(value, str) or not value:
        raise InputError(f"a {what} is required (lowercase DNS-1123); an empty {what} would address a whole "
                         f"collection")
    meta = sorted(set(value) & SHELL_META)
    if meta:
        raise InputError(f"contains shell metacharacter(s) {' '.join(repr(m)[1:-1] for m in meta)}; "
                         f"a {what} must be lowercase DNS-1123")
    if not DNS1123_SUBDOMAIN.fullmatch(value) or any(not DNS1123_LABEL.fullmatch(p) for p in value.split(".")):
        raise InputError(f"must be a lowercase DNS-1123 name (a-z, 0-9, '-', '.'; at most 253 characters, "
                         f"labels of at most 63 that start and end alphanumeric) for the {what}")
    return value


def dns_label(value: Any, *, what: str = "name") -> str:
    """A DNS-1123 label (namespaces): at most 63 characters, no dots."""
    name = dns_name(value, what=what)
    if not DNS1123_LABEL.fullmatch(name):
        raise InputError(f"must be a DNS-1123 label (a-z, 0-9, '-'; at most 63 characters, no dots) for the {what}")
    return name


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str) or not value:
        raise InputError("an IPv4 or IPv6 address is required")
    if "%" in value:
        raise InputError("IPv6 zone ids (%iface) are refused: a control-plane address must be routable")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise InputError("must be an IPv4 or IPv6 address") from None


def ip_address(value: Any) -> str:
    """The canonical text of an IP address (IPv6 compressed; IPv4-mapped IPv6 as the IPv4 address)."""
    address = _ip(value)
    if address.version == 6 and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_ip(value: str) -> bool:
    try:
        _ip(value)
    except InputError:
        return False
    return True


def same_address(a: str, b: str) -> bool:
    """Equal as addresses (canonical forms) when both are IPs, else equal as text."""
    try:
        return ip_address(a) == ip_address(b)
    except InputError:
        return a == b


def url_host(host: str) -> str:
    """``host`` as it appears before ``:port`` in a URL or host:port: IPv6 bracketed."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def host_port(host: str, port: int) -> str:
    return f"{url_host(host)}:{port}"


def port(value: Any) -> int:
    try:
        return integer(value, lo=1, hi=65535)
    except InputError as exc:
        raise InputError(f"port {exc}") from None


def integer(value: Any, *, lo: int, hi: int) -> int:
    """An integer in lo..hi: an int or a string of digits; bools and floats are refused, never truncated."""
    if isinstance(value, (bool, float)):
        raise InputError(f"must be an integer in {lo}..{hi}" + (" (not a fraction)" if isinstance(value, float) else ""))
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise InputError(f"must be an integer in {lo}..{hi}")
    if not lo <= number <= hi:
        raise InputError(f"must be an integer in {lo}..{hi}")
    return number


def seconds(value: Any, *, hi: float = MAX_SECONDS) -> float:
    """A positive, finite duration in seconds, at most ``hi``."""
    if isinstance(value, bool):
        raise InputError(f"must be a positive number of seconds (at most {hi:g})")
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            raise InputError(f"must be a positive number of seconds (at most {hi:g})")
        value = float(value)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= hi:
        raise InputError(f"must be a positive number of seconds (at most {hi:g})")
    return float(value)


def lag(value: Any) -> int:
    """A positive raft-index lag."""
    return integer(value, lo=1, hi=MAX_LAG)


def endpoint_url(value: Any) -> str:
    """An http(s)://host[:port] URL with an IP (IPv6 bracketed) or DNS host and nothing after the port."""
    if not isinstance(value, str) or not value:
        raise InputError("a URL is required, e.g. https://10.0.0.1:2379")
    found = _URL.fullmatch(value)
    if not found:
        raise InputError("must be http(s)://host[:port] (IPv6 in brackets), e.g. https://10.0.0.1:2379; "
                         "no path, user or query")
    host = found["host"]
    if host.startswith("["):
        if _ip(host[1:-1]).version != 6:
            raise InputError("only IPv6 addresses go in brackets")
    elif not is_ip(host):
        if ":" in host:
            raise InputError("an IPv6 host must be in brackets, e.g. https://[fd00::1]:2379")
        dns_name(host, what="host name")
    if found["port"] is not None:
        port(found["port"])
    return value


def split_host_port(value: Any) -> tuple[str, int]:
    """``host:port`` with an IP or DNS host; IPv6 must be bracketed (``[fd00::1]:6443``)."""
    if not isinstance(value, str) or not value:
        raise InputError("required: host:port, e.g. 192.168.0.66:6443")
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise InputError("must be [ipv6]:port, e.g. [fd00::66]:6443")
        if _ip(host).version != 6:
            raise InputError("only IPv6 addresses go in brackets")
        return ip_address(host), port(rest[1:])
    host, sep, number = value.rpartition(":")
    if not sep or not host:
        raise InputError("must be host:port, e.g. 192.168.0.66:6443")
    if ":" in host:
        raise InputError("an IPv6 host must be in brackets, e.g. [fd00::66]:6443")
    if not is_ip(host):
        dns_name(host, what="host name")
    return (ip_address(host) if is_ip(host) else host), port(number)


STACK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
COMMIT_ID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_REVISION = re.compile(r"[A-Za-z0-9_./@{}^~-]{1,200}")


def stack_name(value: Any) -> str:
    """A Pulumi stack name as it appears in ``Pulumi.<stack>.yaml``: letters, digits, '_', '.', '-'
    (starting alphanumeric, at most 100), so the file stays inside the project directory."""
    if not isinstance(value, str) or not STACK_NAME.fullmatch(value) or ".." in value:
        raise InputError("must be a stack name (letters, digits, '_', '.', '-', starting with a letter or digit, "
                         "at most 100; no '/' or '..': Pulumi.<stack>.yaml stays in the project directory)")
    return value


def git_revision(value: Any) -> str:
    """A git revision that cannot be read as an option or a path (no leading '-', no ':' or spaces)."""
    if not isinstance(value, str) or not _REVISION.fullmatch(value) or value.startswith("-"):
        raise InputError("must be a git revision such as origin/main, HEAD~1 or a commit id (no leading '-', "
                         "no ':', spaces or control characters)")
    return value


SLOT = re.compile(r"[a-z][a-z0-9-]{0,30}")
WORD = re.compile(r"[A-Za-z0-9._-]{1,200}")


def slot(value: Any) -> str:
    if not isinstance(value, str) or not SLOT.fullmatch(value):
        raise InputError("slot names are lowercase letters, digits and '-', starting with a letter (at most 31)")
    return value


def image(value: Any) -> str:
    if not isinstance(value, str) or not IMAGE.fullmatch(value):
        raise InputError("must be an image with its tag or digest, e.g. ghcr.io/kubean-io/spray-job:v0.12.2")
    if value.endswith(":latest"):
        raise InputError("must be pinned to the image used at deploy, not :latest")
    return value


def word(value: Any) -> str:
    """A token written into an object or a command: [A-Za-z0-9._-], 1 to 200 characters."""
    if not isinstance(value, str) or not WORD.fullmatch(value):
        raise InputError("must be 1-200 of [A-Za-z0-9._-]")
    return value


def relative_path(value: Any) -> str:
    """A relative path of [A-Za-z0-9._/-] that stays below its base (no '..' component)."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9._/-]+", value) or value.startswith("/"):
        raise InputError("must be a relative path of [A-Za-z0-9._/-]")
    if ".." in value.split("/"):
        raise InputError("must not contain '..' (it must stay inside its base directory)")
    return value


def absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"/[A-Za-z0-9._/-]+", value):
        raise InputError("must be an absolute path without shell metacharacters")
    if ".." in value.split("/"):
        raise InputError("must not contain '..'")
    return value


def node_names(value: Any) -> list[str]:
    """A non-empty sequence of node names (a bare string is refused: it would iterate characters)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise InputError("must be a list of node names")
    names = [dns_name(v, what="node name") for v in value]
    if not names:
        raise InputError("at least one node name is required")
    return names


def path_segment(value: Any) -> str:
    """One segment of a Kubernetes API path (group, version, namespace, plural or name): never empty,
    so no request can address a collection where an object was meant."""
    return dns_name(value, what="API path segment")


_F = TypeVar("_F", bound=Callable[..., Any])


def validated(**rules: Callable[[Any], Any]) -> Callable[[_F], _F]:
    """Executors' entry guard: each keyword argument named in ``rules`` (when given and not None) must
    pass its validator before the body runs, i.e. before the first API call; otherwise ConfigError
    naming the function, the argument, the value and the rule."""
    def wrap(fn: _F) -> _F:
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            problems = []
            for name, rule in rules.items():
                if kwargs.get(name) is None:
                    continue
                try:
                    rule(kwargs[name])
                except InputError as exc:
                    problems.append(Violation(f"{fn.__name__}({name}=)", _shown(kwargs[name]), str(exc)))
            if problems:
                raise ConfigError(problems)
            return fn(*args, **kwargs)
        return guarded  # type: ignore[return-value]
    return wrap


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 120 else text[:120] + "…"
