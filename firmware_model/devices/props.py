"""The -device property language: specs, parsing, and the one-line errors.

Values are parsed as QEMU 7.2's option visitor parses them: integers in C
syntax (``0x`` hex, a leading ``0`` octal, an optional sign; no spaces, no
underscores), booleans as on/off/yes/no/true/false/y/n, and every integer
is checked against the C type of its property before any rule of the
device.  A value that fails raises ``DeviceConfigError`` (a ``ValueError``)
whose one line names the device, the property and what it accepts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

class DeviceConfigError(ValueError):
    """A -device name or property the models cannot honour; always one printable line."""

    def __init__(self, message: str):
        # a value echoed in the message may hold a newline or a control byte
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


@dataclass(frozen=True)
class PropSpec:
    name: str
    default: str
    help: str


@dataclass(frozen=True)
class DeviceKind:
    name: str
    help: str
    props: tuple[PropSpec, ...]

    def prop_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.props)


def default(kind: DeviceKind, name: str) -> str:
    for p in kind.props:
        if p.name == name:
            return p.default
    raise KeyError(name)


def prop(kind: DeviceKind, p: dict[str, str], name: str) -> str:
    """A property's value as given, else its default."""
    return p.get(name, default(kind, name))


def flag(kind: DeviceKind, p: dict[str, str], name: str) -> bool:
    return as_bool(kind, name, prop(kind, p, name))


def on_off_auto(kind: DeviceKind, p: dict[str, str], name: str) -> str:
    """An OnOffAuto property: "auto", "on" or "off"."""
    v = prop(kind, p, name)
    if v.lower() == "auto":
        return "auto"
    return "on" if as_bool(kind, name, v) else "off"


def bad_prop(kind: DeviceKind, name: str, why: str) -> DeviceConfigError:
    """The error for property ``name``: ``why``, which says what it accepts."""
    if name not in why:
        why = f"{why} (property '{name}')"
    return DeviceConfigError(f"{kind.name}: {why}")


_ON = ("on", "yes", "true", "y")
_OFF = ("off", "no", "false", "n")


def as_bool(kind: DeviceKind, name: str, value: str) -> bool:
    v = value.lower()
    if v in _ON:
        return True
    if v in _OFF:
        return False
    raise bad_prop(kind, name, f"property '{name}' expects 'on' or 'off', not '{value}'")


# strtoull's syntax as QEMU's parse_uint takes it (base 0), ASCII only
_C_INT = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", re.ASCII)

# the C types of QEMU's integer properties, by range, for its own wording
C_TYPES = {(0, 0xFF): "uint8_t", (0, 0xFFFF): "uint16_t", (0, 0xFFFFFFFF): "uint32_t",
           (0, (1 << 64) - 1): "uint64_t", (-(1 << 31), (1 << 31) - 1): "int32_t",
           (-(1 << 63), (1 << 63) - 1): "int64_t"}


def parse_int(text: str) -> int | None:
    """An integer in C syntax (0x hex, 0 octal, decimal, optional sign); None if not one."""
    m = _C_INT.fullmatch(text)
    if m is None:
        return None
    sign, digits = m.groups()
    if digits[:2] in ("0x", "0X"):
        n = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        n = int(digits[1:], 8)
    else:
        n = int(digits)
    return -n if sign == "-" else n


def as_int(kind: DeviceKind, name: str, value: str, lo: int, hi: int) -> int:
    """``value`` as an integer in [lo, hi] (QEMU: "Parameter 'x' expects uint32_t")."""
    n = parse_int(value)
    if n is None:
        raise bad_prop(kind, name, f"property '{name}' expects an integer, not '{value}'")
    if not lo <= n <= hi:
        ctype = C_TYPES.get((lo, hi))
        what = f"{ctype} ({lo}..{hi})" if ctype else f"an integer from {lo} to {hi}"
        raise bad_prop(kind, name, f"property '{name}' expects {what}, not {n}")
    return n


_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", re.ASCII)


def as_mac(kind: DeviceKind, value: str) -> bytes:
    if not _MAC.fullmatch(value):
        raise bad_prop(kind, "mac", f"property 'mac' doesn't take value '{value}' "
                                    f"(six hex bytes separated by ':')")
    return bytes(int(part, 16) for part in value.split(":"))


def props_dict(kind: DeviceKind, props) -> dict[str, str]:
    items = props.items() if isinstance(props, Mapping) else props
    out: dict[str, str] = {}
    names = kind.prop_names()
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise DeviceConfigError(f"{kind.name}: property {item!r} is not a (name, value) pair") from None
        name, value = str(name), str(value)
        if name not in names:
            raise bad_prop(kind, name, f"property '{name}' not supported (supported "
                                       f"properties: {', '.join(names)})")
        out[name] = value          # a repeated property: the last one counts, as in QEMU
    return out


