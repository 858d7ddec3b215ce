"""Teaching tools: the worked examples, network files, walkthroughs, errata and graph drawings."""
