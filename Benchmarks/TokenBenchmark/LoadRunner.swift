import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// What one operation (one flow, one request) came to.
enum Outcome: Sendable {
    /// Succeeded; `steps` are the durations of its parts in seconds (may be empty).
    case success(steps: [Double])
    /// Failed; the text says how (status and a clipped body, or the transport error).
    case failure(String)
    /// No input left (the pre-generated codes ran out); the worker stops.
    case exhausted
}

/// The raw measurements of one load run.
struct LoadMeasurement: Sendable {
    /// Operations that finished inside the measured window.
    var completed = 0
    /// Operations that finished during the warm-up.
    var warmupCompleted = 0
    /// Grant-state writes during the warm-up and window (set by the caller).
    var grantWrites: Int?
    /// Latencies (seconds) of those operations.
    var latencies: [Double] = []
    /// Per-step latencies (seconds) of those operations, by step index.
    var steps: [[Double]] = []
    /// Operations finished in each second of the window.
    var perSecond: [Int] = []
    /// Failures during the whole run, warm-up included.
    var errors = 0
    var errorSamples: [String] = []
    /// Length of the measured window in seconds (shorter than asked if input ran out).
    var window: Double = 0
    /// Process CPU seconds (user, system) used during the measured window.
    var cpuUser: Double = 0
    var cpuSystem: Double = 0
    /// Share of all cores other processes kept busy during the window.
    var otherCPUUtilization: Double?
    /// Whether some worker ran out of input before the window ended.
    var exhausted = false

    mutating func merge(_ other: LoadMeasurement) {
        completed += other.completed
        warmupCompleted += other.warmupCompleted
        latencies += other.latencies
        for (index, values) in other.steps.enumerated() {
            while steps.count <= index { steps.append([]) }
            steps[index] += values
        }
        for (index, value) in other.perSecond.enumerated() {
            while perSecond.count <= index { perSecond.append(0) }
            perSecond[index] += value
        }
        errors += other.errors
        for sample in other.errorSamples where errorSamples.count < 5 { errorSamples.append(sample) }
        exhausted = exhausted || other.exhausted
    }
}

/// Runs `concurrency` workers that repeat an operation: `warmup` seconds unmeasured, then a
/// measured window of `duration` seconds. An operation counts when it finishes inside the window.
enum LoadRunner {
    final class Stop: Sendable {
        /// Nanoseconds since `start` at which a worker ran out of input; `Int.max` while none has.
        let exhaustedAt = Atomic<Int>(Int.max)
    }

    static func run(
        concurrency: Int, warmup: Double, duration: Double,
        operation: @escaping @Sendable (_ worker: Int) async -> Outcome
    ) async -> LoadMeasurement {
        let clock = ContinuousClock()
        let start = clock.now
        let measureStart = start + .nanoseconds(Int64(warmup * 1e9))
        let end = measureStart + .nanoseconds(Int64(duration * 1e9))
        let stop = Stop()

        // CPU counters are read at the window's edges by a thread of its own, so that a saturated
        // cooperative pool cannot delay the readings.
        let sampler = Task { await WindowSampler.sample(from: measureStart, to: end, stop: stop, clock: clock) }

        var total = await withTaskGroup(of: LoadMeasurement.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    var local = LoadMeasurement()
                    local.latencies.reserveCapacity(4096)
                    while true {
                        let began = clock.now
                        if began >= end || stop.exhaustedAt.load(ordering: .relaxed) != Int.max { break }
                        let outcome = await operation(worker)
                        let finished = clock.now
                        let inWindow = finished >= measureStart && finished <= end
                        switch outcome {
                        case .success(let steps):
                            if finished < measureStart { local.warmupCompleted += 1 }
                            guard inWindow else { continue }
                            local.completed += 1
                            local.latencies.append((finished - began).seconds)
                            let second = max(0, Int((finished - measureStart).seconds))
                            while local.perSecond.count <= second { local.perSecond.append(0) }
                            local.perSecond[second] += 1
                            for (index, value) in steps.enumerated() {
                                while local.steps.count <= index { local.steps.append([]) }
                                local.steps[index].append(value)
                            }
                        case .failure(let text):
                            local.errors += 1
                            if local.errorSamples.count < 5 { local.errorSamples.append(text) }
                        case .exhausted:
                            let at = Int((finished - start).seconds * 1e9)
                            _ = stop.exhaustedAt.compareExchange(expected: Int.max, desired: at, ordering: .relaxed)
                            local.exhausted = true
                            return local
                        }
                    }
                    return local
                }
            }
            var merged = LoadMeasurement()
            for await part in group { merged.merge(part) }
            return merged
        }
        let exhaustedAt = stop.exhaustedAt.load(ordering: .relaxed)
        if exhaustedAt != Int.max {
            total.window = max(0, Double(exhaustedAt) / 1e9 - warmup)
        } else {
            total.window = duration
        }
        let (before, after, wall) = await sampler.value
        total.cpuUser = after.user - before.user
        total.cpuSystem = after.system - before.system
        total.otherCPUUtilization = before.otherUtilization(until: after, wall: wall)
        return total
    }
}

/// Reads ``CPUCounters`` at two instants from a dedicated thread.
enum WindowSampler {
    static func sample(
        from: ContinuousClock.Instant, to: ContinuousClock.Instant, stop: LoadRunner.Stop, clock: ContinuousClock
    ) async -> (CPUCounters, CPUCounters, Double) {
        await withCheckedContinuation { continuation in
            let thread = Thread {
                sleep(until: from, clock: clock, stop: stop)
                let before = CPUCounters.now()
                let began = clock.now
                sleep(until: to, clock: clock, stop: stop)
                let after = CPUCounters.now()
                continuation.resume(returning: (before, after, (clock.now - began).seconds))
            }
            thread.start()
        }
    }

    /// Sleeps in slices of at most 5 ms until `deadline`, or until a worker ran out of input.
    private static func sleep(until deadline: ContinuousClock.Instant, clock: ContinuousClock, stop: LoadRunner.Stop) {
        while true {
            let remaining = (deadline - clock.now).seconds
            if remaining <= 0 || stop.exhaustedAt.load(ordering: .relaxed) != Int.max { return }
            usleep(useconds_t(min(remaining, 0.005) * 1_000_000))
        }
    }
}

/// Latency percentiles in milliseconds.
struct LatencySummary: Codable, Sendable {
    var count: Int
    var meanMs: Double
    var p50Ms: Double
    var p90Ms: Double
    var p99Ms: Double
    var maxMs: Double

    init(_ seconds: [Double]) {
        let sorted = seconds.sorted()
        count = sorted.count
        func at(_ q: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            return sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] * 1000
        }
        meanMs = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count) * 1000
        p50Ms = at(0.50)
        p90Ms = at(0.90)
        p99Ms = at(0.99)
        maxMs = (sorted.last ?? 0) * 1000
    }
}
