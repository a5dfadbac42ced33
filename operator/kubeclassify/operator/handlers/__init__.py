"""What the Kopf handlers in `main.py` do, one module per resource."""
