"""Media and file sharing (docs/media.md): the object store client, the verification of
uploaded bytes, and the media processor process (``python -m media``)."""
