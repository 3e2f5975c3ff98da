"""zpci-emu: unicorn machine, decoder front end, traces, replay, reports and the CLI."""
