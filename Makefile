bench:
	bash scripts/bench.sh
test:
	bash scripts/test.sh
demo:
	bash demo.sh
.PHONY: bench test demo
