"""Pure content checks on bytes (sniff, image, media, archive, pdf) and previews; see base.py."""
