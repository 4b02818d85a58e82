"""Mints an HS256 dev token (the dev server's KPI_AUTH_DEV_SECRET) for the contract run."""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    secret, workspace = sys.argv[1], sys.argv[2]
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {
        "sub": "contract-test",
        "workspaces": [workspace],
        "platform_admin": True,
        "iss": "kpi-integrations-dev",
        "aud": "kpi-integrations",
        "exp": int(time.time()) + 3600,
    }
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    print(f"{signing_input}.{b64(signature)}")


if __name__ == "__main__":
    main()
