"""The browser UI: a static page and a same-origin gateway to the speech and avatar services."""
