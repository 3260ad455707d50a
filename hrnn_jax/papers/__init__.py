"""Each paper's tables and analyses, one module per paper (``quadrana2017``, ``donkers2017``,
``ma2019``, ``song2019``)."""
