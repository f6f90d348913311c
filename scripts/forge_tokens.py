"""Forges attack tokens against Portcullis' authorizer with PyJWT, an independent
JOSE implementation. Reads a JSON job on stdin, prints a JSON list of
{"name", "token"}. The first entry, "control", is a correctly signed token that the
authorizer must accept: it proves the forgeries differ only in what they attack.

job: {"private_pem", "kid", "claims", "refresh_token", "revoked_token"}
"""

import base64
import copy
import hashlib
import hmac
import json
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw(header: dict, payload, signature: bytes = b"") -> str:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    return f"{b64(json.dumps(header, separators=(',', ':')).encode())}.{b64(body)}.{b64(signature)}"


def main() -> None:
    job = json.load(sys.stdin)
    key = serialization.load_pem_private_key(job["private_pem"].encode(), password=None)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = job["kid"]
    claims = job["claims"]
    header = {"typ": "at+jwt", "kid": kid}
    attacker = ec.generate_private_key(ec.SECP256R1())
    attacker_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key()))
    our_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))

    def ours(payload=None, headers=None):
        return jwt.encode(payload if payload is not None else claims, key, algorithm="ES256", headers=headers or header)

    def theirs(headers, payload=None, algorithm="ES256", signer=None):
        return jwt.encode(payload if payload is not None else claims, signer or attacker, algorithm=algorithm, headers=headers)

    def with_claims(**changes):
        c = copy.deepcopy(claims)
        for k, v in changes.items():
            if v is None:
                c.pop(k, None)
            else:
                c[k] = v
        return c

    def hs256(secret: bytes, payload=None) -> str:
        h = {"alg": "HS256", "typ": "at+jwt", "kid": kid}
        body = json.dumps(payload or claims, separators=(",", ":")).encode()
        signing_input = f"{b64(json.dumps(h, separators=(',', ':')).encode())}.{b64(body)}".encode()
        return signing_input.decode() + "." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())

    valid = ours()
    head, payload, sig = valid.split(".")
    der_sig = utils.encode_dss_signature(
        int.from_bytes(base64.urlsafe_b64decode(sig + "==")[:32], "big"),
        int.from_bytes(base64.urlsafe_b64decode(sig + "==")[32:], "big"),
    )
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    admin_claims = with_claims(roles=["admin"])
    tokens = [
        ("control", valid),
        ("alg none", raw({"alg": "none", **header}, claims)),
        ("alg None", raw({"alg": "None", **header}, claims)),
        ("alg NONE", raw({"alg": "NONE", **header}, claims)),
        ("alg nOnE with signature", raw({"alg": "nOnE", **header}, claims, b"x" * 64)),
        ("HS256 keyed with the public key PEM", hs256(public_pem)),
        ("HS256 keyed with the public key PEM, admin", hs256(public_pem, admin_claims)),
        ("unknown kid", ours(headers={"typ": "at+jwt", "kid": "nope"})),
        ("path-like kid", ours(headers={"typ": "at+jwt", "kid": "../../../../../dev/null"})),
        ("SQL-like kid", ours(headers={"typ": "at+jwt", "kid": "' OR '1'='1"})),
        ("no kid", ours(headers={"typ": "at+jwt"})),
        ("jku injection", theirs({**header, "jku": "https://attacker.example/jwks.json"})),
        ("x5u injection", theirs({**header, "x5u": "https://attacker.example/cert.pem"})),
        ("embedded jwk", theirs({**header, "jwk": attacker_jwk})),
        ("attacker key, our kid", theirs(header)),
        ("crit exp", ours(headers={**header, "crit": ["exp"], "exp": 1})),
        ("crit unknown", ours(headers={**header, "crit": ["urn:x"], "urn:x": True})),
        # The same header edits signed with our own key and of the types a JOSE
        # library parses: only the header allow-list can refuse these.
        ("jku, signed by us", ours(headers={**header, "jku": "https://attacker.example/jwks.json"})),
        ("x5u, signed by us", ours(headers={**header, "x5u": "https://attacker.example/cert.pem"})),
        ("our own jwk embedded, signed by us", ours(headers={**header, "jwk": our_jwk})),
        ("x5c, signed by us", ours(headers={**header, "x5c": ["MIIB"]})),
        ("crit alone, signed by us", ours(headers={**header, "crit": ["exp"]})),
        ("crit with a string extension, signed by us", ours(headers={**header, "crit": ["urn:x"], "urn:x": "1"})),
        ("cty, signed by us", ours(headers={**header, "cty": "JWT"})),
        ("unknown string parameter, signed by us", ours(headers={**header, "urn:x": "1"})),
        ("typ JWT", ours(headers={"typ": "JWT", "kid": kid})),
        ("no typ", ours(headers={"kid": kid})),
        ("expired", ours(with_claims(exp=claims["iat"] - 3600))),
        ("nbf in the future", ours(with_claims(nbf=claims["iat"] + 3600))),
        ("iat in the future", ours(with_claims(iat=claims["iat"] + 3600, nbf=claims["iat"]))),
        ("string exp", ours(with_claims(exp=str(claims["exp"])))),
        ("missing exp", ours(with_claims(exp=None))),
        ("missing sub", ours(with_claims(sub=None))),
        ("wrong iss", ours(with_claims(iss="https://attacker.example"))),
        ("wrong aud", ours(with_claims(aud="someone-else"))),
        ("aud list without ours", ours(with_claims(aud=["someone-else"]))),
        ("tampered header", b64(json.dumps({"alg": "ES256", "typ": "at+jwt", "kid": kid, "x": 1}).encode()) + "." + payload + "." + sig),
        ("tampered payload", head + "." + b64(json.dumps(admin_claims).encode()) + "." + sig),
        ("tampered signature", head + "." + payload + "." + flipped),
        ("DER signature", head + "." + payload + "." + b64(der_sig)),
        ("empty signature", head + "." + payload + "."),
        ("truncated", head + "." + payload),
        ("extra segment", valid + ".e30"),
        ("whitespace inside", head + ". " + payload + "." + sig),
        ("ES384 by attacker", theirs({**header}, algorithm="ES384", signer=ec.generate_private_key(ec.SECP384R1()))),
        ("100 KB token", ours(with_claims(pad="A" * 100_000))),
        ("refresh token as bearer", job["refresh_token"]),
        ("token of a revoked session", job["revoked_token"]),
    ]
    json.dump([{"name": n, "token": t} for n, t in tokens], sys.stdout)


if __name__ == "__main__":
    main()
