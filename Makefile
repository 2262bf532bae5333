.PHONY: test demo bench

# The whole suite: vet, gofmt, staticcheck, race tests, kernel tests, fuzz.
test:
	bash scripts/test.sh

# Benchmarks of every package (ratios against baselines are printed by the
# benchmarks themselves; see README).
bench:
	go test -run='^$$' -bench=. -benchmem ./...
