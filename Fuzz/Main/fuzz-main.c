// The fuzzer executable. libFuzzer supplies main(), which calls LLVMFuzzerInitialize and
// LLVMFuzzerTestOneInput from the Swift module TsidpFuzzTargets. This target is C so that
// SwiftPM, which renames the entry point of Swift executables, leaves main() alone.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
