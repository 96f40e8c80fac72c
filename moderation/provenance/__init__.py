"""Provenance of delivered videos, as plain library code (no Django, no database).

- ``watermark``: an invisible keyed watermark carrying a 64-bit job payload in every frame.
- ``fingerprint``: PDQ hashes of a video and an exact Hamming-radius index of them.
- ``c2pa_sign``: signed C2PA content credentials for the final MP4, the watermark declared in
  them as a soft binding, and the manifest store kept apart (imports c2pa).
- ``devcert``: a local development certificate chain for C2PA signing.
- ``trace``: watermark and fingerprint answers for a copy of a video, in one pass.

Callers persist what these return; nothing here keeps state beyond the index object it is given.
"""
