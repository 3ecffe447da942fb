"""One template language everywhere: Jinja2 sandboxed, StrictUndefined, one context shape."""
