"""Reads run folders and draws figures; never imports torch."""
