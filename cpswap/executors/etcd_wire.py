"""Raw protobuf wire helpers for the etcd Cluster API fields python-etcd3's protos lack. Pure.

python-etcd3 (and its fork etcd-sdk-python) ship protos without ``Member.isLearner`` (field 5),
``MemberAddRequest.isLearner`` (field 2) and ``MemberPromote``. etcd's own proto
(api/etcdserverpb/rpc.proto) defines them; we encode and decode exactly those fields here:

  Member            { uint64 ID = 1; string name = 2; repeated string peerURLs = 3;
                      repeated string clientURLs = 4; bool isLearner = 5; }
  MemberListResponse{ ResponseHeader header = 1; repeated Member members = 2; }
  MemberAddRequest  { repeated string peerURLs = 1; bool isLearner = 2; }
  MemberAddResponse { ResponseHeader header = 1; Member member = 2; repeated Member members = 3; }
  MemberPromoteRequest { uint64 ID = 1; }
"""
from __future__ import annotations

from cpswap.core.facts import EtcdMember


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def iter_fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for every field of one message."""
    fields: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            fields.append((number, wire, value))
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            fields.append((number, wire, data[pos:pos + length]))
            pos += length
        elif wire == 1:
            fields.append((number, wire, int.from_bytes(data[pos:pos + 8], "little")))
            pos += 8
        elif wire == 5:
            fields.append((number, wire, int.from_bytes(data[pos:pos + 4], "little")))
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def decode_member(data: bytes) -> EtcdMember:
    member_id, name, peers, clients, learner = 0, "", [], [], False
    for number, _, value in iter_fields(data):
        if number == 1:
            member_id = int(value)
        elif number == 2:
            name = bytes(value).decode()
        elif number == 3:
            peers.append(bytes(value).decode())
        elif number == 4:
            clients.append(bytes(value).decode())
        elif number == 5:
            learner = bool(value)
    return EtcdMember(id=member_id, name=name, peer_urls=tuple(peers), client_urls=tuple(clients), is_learner=learner)


def decode_member_list(data: bytes) -> tuple[EtcdMember, ...]:
    return tuple(decode_member(bytes(v)) for n, w, v in iter_fields(data) if n == 2 and w == 2)


def decode_member_add(data: bytes) -> EtcdMember:
    for number, wire, value in iter_fields(data):
        if number == 2 and wire == 2:
            return decode_member(bytes(value))
    raise ValueError("MemberAddResponse without member")


def encode_member_add(*, peer_urls: tuple[str, ...], learner: bool) -> bytes:
    out = bytearray()
    for url in peer_urls:
        raw = url.encode()
        out += b"\x0a" + encode_varint(len(raw)) + raw
    if learner:
        out += b"\x10\x01"
    return bytes(out)


def encode_member_id(member_id: int) -> bytes:
    return b"\x08" + encode_varint(member_id)
