"""Supabase Storage download as the platform does it: `supabase` is imported with the module, and every
download builds a fresh client with `create_client(url, key)` (which checks that the key looks like a JWT)
and asks `client.storage.from_(bucket).download(path)`. Only when that fails with an error that mentions
"proxy" does it fall back to a direct Storage REST GET with httpx.

With the platform's pins (supabase 2.3.2 + httpx 0.25.2, which pip resolves to gotrue 2.9.1) that fallback
is the path actually taken: gotrue 2.9.1 passes `proxy=` to httpx.Client, which httpx 0.25 does not accept,
so `create_client` raises a TypeError about 'proxy' on every call, after the key check and after part of the
client has been built."""

from __future__ import annotations

from urllib.parse import quote

import httpx
from supabase import Client, create_client

from .config import settings


def _client() -> Client:
    if not settings.SUPABASE_URL or not settings.storage_key:
        raise ValueError("Supabase storage is not configured")
    return create_client(settings.SUPABASE_URL, settings.storage_key)


def _rest_download(bucket: str, path: str) -> bytes:
    key = settings.storage_key
    url = f"{settings.SUPABASE_URL.rstrip('/')}/storage/v1/object/{quote(bucket, safe='')}/{quote(path, safe='/')}"
    headers = {"apikey": key, "Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    response = httpx.get(url, headers=headers, timeout=60.0)
    if response.status_code >= 400:
        raise ValueError(f"Supabase storage download failed ({response.status_code}): {response.text}")
    return response.content


def download(bucket: str, path: str) -> bytes:
    try:
        data = _client().storage.from_(bucket).download(path)
        if isinstance(data, memoryview):
            return data.tobytes()
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        # anything else: try the REST endpoint below
    except Exception as exc:  # noqa: BLE001
        if "proxy" not in str(exc).lower():
            raise
    return _rest_download(bucket, path)
