"""Small real processing routines shipped for the demo and the tests.

They follow the HR-WSI chain L1C -> L2A (atmospheric correction) -> FSC (fractional snow cover)
-> QUICKLOOK (a PNG), on small synthetic rasters. Each reads its input, writes one product file in
its output directory and exits 0; exit code 210 means an external fault (HR-WSI's convention).
"""
