"""(file map filled in by the package owner)"""
