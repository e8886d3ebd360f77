import AnyJSON
import Foundation
import Logging

/// Records the Secret store's Events on the pod, so that `kubectl describe pod` shows when the
/// state was loaded, updated, or could not be.
///
/// One Event per reason and pod, named `<POD_NAME>.<POD_UID>.<lowercased reason>`: the first
/// occurrence creates it, later ones raise its `count` and `lastTimestamp` (GET, then PATCH, or
/// POST after a 404). Delivery runs beside the store's writes, never in their way: a write does
/// not wait for its Event, and an Event that cannot be recorded is logged and counted into the
/// next attempt.
///
/// tsidp writes on every token refresh, so ``Reason/updated`` is coalesced: at most one delivery
/// per ``interval``, whose `count` carries every update since the last one. The other reasons are
/// delivered as they happen.
actor KubeEventRecorder {
    /// Why an Event is recorded.
    enum Reason: String, CaseIterable, Sendable, Comparable {
        case loaded = "TsidpStateLoaded"
        case loadFailed = "TsidpStateLoadFailed"
        case updated = "TsidpStateUpdated"
        case updateFailed = "TsidpStateUpdateFailed"
        case full = "TsidpStateFull"

        /// `Normal` or `Warning`.
        var type: String {
            switch self {
            case .loaded, .updated: return "Normal"
            case .loadFailed, .updateFailed, .full: return "Warning"
            }
        }

        var isCoalesced: Bool { self == .updated }

        static func < (lhs: Reason, rhs: Reason) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    /// The pod the Events are about (`POD_NAME`, `POD_UID`, the namespace).
    struct Pod: Sendable, Equatable {
        var name: String
        var uid: String
        var namespace: String
    }

    /// The Event's name for `reason`: `<POD_NAME>.<POD_UID>.<lowercased reason>`.
    static func eventName(pod: Pod, reason: Reason) -> String {
        "\(pod.name).\(pod.uid).\(reason.rawValue.lowercased())"
    }

    private struct Pending {
        var count: Int
        var message: String
    }

    private let client: KubeClient
    private let pod: Pod
    /// The shortest time between two deliveries of a coalesced reason.
    let interval: Duration
    private let logger: Logger
    private let clock = ContinuousClock()
    private var pending: [Reason: Pending] = [:]
    private var lastAttempt: [Reason: ContinuousClock.Instant] = [:]
    private var delivering = false
    private var timer: Task<Void, Never>?
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    private var failing = false

    init(client: KubeClient, pod: Pod, interval: Duration, logger: Logger) {
        self.client = client
        self.pod = pod
        self.interval = interval
        self.logger = logger
    }

    deinit {
        timer?.cancel()
    }

    /// Records one occurrence of `reason`; `message` replaces the Event's message when it is created.
    func record(_ reason: Reason, message: String) {
        var entry = pending[reason] ?? Pending(count: 0, message: message)
        entry.count += 1
        entry.message = message
        pending[reason] = entry
        startDelivery(force: false)
    }

    /// Delivers everything recorded so far, coalesced updates included, and returns when done.
    func flush() async {
        await idle()
        startDelivery(force: true)
        await idle()
    }

    /// Returns when no delivery is running.
    func idle() async {
        guard delivering else { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    private func isDue(_ reason: Reason, force: Bool, now: ContinuousClock.Instant) -> Bool {
        guard !force, reason.isCoalesced, let last = lastAttempt[reason] else { return true }
        return last.duration(to: now) >= interval
    }

    private func startDelivery(force: Bool) {
        guard !delivering else { return }
        let now = clock.now
        guard pending.keys.contains(where: { isDue($0, force: force, now: now) }) else {
            scheduleTimer()
            return
        }
        delivering = true
        Task { await self.deliver(force: force) }
    }

    private func deliver(force: Bool) async {
        var failed: Set<Reason> = []
        while true {
            let now = clock.now
            guard
                let reason = pending.keys.sorted().first(where: {
                    !failed.contains($0) && isDue($0, force: force, now: now)
                }), let entry = pending.removeValue(forKey: reason)
            else { break }
            lastAttempt[reason] = now
            do {
                try await send(reason, entry)
                if failing { logger.info("Kubernetes Events are recorded again") }
                failing = false
            } catch {
                failed.insert(reason)
                // Counted into the next attempt, so the Event's count stays the number of occurrences.
                var merged = pending[reason] ?? Pending(count: 0, message: entry.message)
                merged.count += entry.count
                pending[reason] = merged
                let level: Logger.Level = failing ? .debug : .warning
                failing = true
                logger.log(
                    level: level, "cannot record the Kubernetes Event; the state itself is not affected",
                    metadata: ["reason": "\(reason.rawValue)", "error": "\(error)"])
            }
        }
        delivering = false
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
        scheduleTimer()
    }

    /// Wakes up when the first coalesced reason waiting falls due.
    private func scheduleTimer() {
        guard timer == nil else { return }
        let waiting = pending.keys.compactMap { reason in lastAttempt[reason].map { $0.advanced(by: interval) } }
        guard let deadline = waiting.min() else { return }
        timer = Task { [weak self, clock] in
            try? await Task.sleep(until: deadline, clock: clock)
            await self?.timerFired()
        }
    }

    private func timerFired() {
        timer = nil
        startDelivery(force: false)
    }

    private func send(_ reason: Reason, _ entry: Pending) async throws {
        let name = Self.eventName(pod: pod, reason: reason)
        let now = Date.ISO8601FormatStyle(includingFractionalSeconds: true).format(Date())
        let existing: KubeEvent
        do {
            existing = try await client.getEvent(name)
        } catch let error as KubeError where error.kind == .notFound {
            let event = KubeEvent(
                name: name, namespace: pod.namespace, reason: reason.rawValue, type: reason.type,
                message: entry.message,
                pod: .init(kind: "Pod", namespace: pod.namespace, name: pod.name, uid: pod.uid, apiVersion: "v1"),
                count: entry.count, timestamp: now)
            _ = try await client.createEvent(event)
            return
        }
        var patch: [JSONPatchOperation] = [
            .replace("/count", .int(Int64((existing.count ?? 0) + entry.count))),
            .replace("/lastTimestamp", .string(now)),
        ]
        if existing.message != entry.message { patch.append(.add("/message", .string(entry.message))) }
        _ = try await client.patchEvent(name, jsonPatch: patch)
    }
}
