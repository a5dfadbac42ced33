"""The FastAPI gateway: accounts, credits, classification, images, batches and the web page."""
