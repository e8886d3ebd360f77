import AnyJSON
import Foundation
import Logging

/// A state store in a Kubernetes Secret (`kube:<secret-name>`), beside the keys tailscaled
/// keeps in the same Secret.
///
/// At open it checks the service account's permissions (SelfSubjectAccessReviews) and reads the
/// Secret once; from then on every read and listing is served from memory. A write is one API
/// call that the API server applies whole or not at all: a JSON patch, or, when patching is not
/// allowed, a replace (PUT) carrying the `resourceVersion` just read, tried again after a 409.
/// A missing Secret is created at the first write. tsidp's keys are mapped by
/// ``SecretKeyMapping`` so that they never meet tailscaled's, which are kept as they are.
///
/// - Important: Memory changes only after the API server accepted a write. A failed write throws
///   ``StateStoreError/Kind/io`` with the server's message and leaves memory as it was; a write
///   that would take the Secret past its size limit is refused before anything is sent
///   (``StateStoreError/Kind/full``). No value and no token is ever logged.
public actor SecretStateStore: StateStore {
    /// Tunables, with the defaults tsidp runs with.
    public struct Configuration: Sendable {
        /// How long one API request may take.
        public var requestTimeout: Duration = .seconds(10)
        /// Bytes kept free below Kubernetes' 1 MiB limit for tailscaled's own keys (its login,
        /// profiles, TLS certificate), which it writes to the same Secret.
        public var reserve = 64 * 1024
        /// The shortest time between two `TsidpStateUpdated` Event deliveries.
        public var updateEventInterval: Duration = .seconds(60)
        /// How many times a replace refused with 409 Conflict is tried again, each after reading
        /// the Secret again.
        public var conflictRetries = 4

        public init() {}

        /// The size (data keys plus values, in bytes) tsidp's writes may take the Secret to.
        public var sizeLimit: Int { SecretSize.kubernetesLimit - reserve }
    }

    /// The Secret's name.
    public nonisolated let secretName: String
    /// The namespace it lives in (the service account's).
    public nonisolated let namespace: String
    public nonisolated let configuration: Configuration
    private let client: KubeClient
    private let logger: Logger
    private let events: KubeEventRecorder?
    /// The Secret as last read or written; nil while it does not exist.
    private var secret: KubeSecret?
    private var canPatch: Bool
    /// Set after a failed write whose outcome is unknown: the next write reads the Secret first.
    private var stale = false
    private var writing = false
    private var writeWaiters: [CheckedContinuation<Void, Never>] = []
    private var warnedNearFull = false
    /// How many callers have opened the reserve (``openReserve()``).
    private var reserveOpenings = 0
    /// What stays free even while the reserve is open.
    static let reserveMargin = 16 * 1024

    private init(
        secretName: String, client: KubeClient, configuration: Configuration, logger: Logger,
        events: KubeEventRecorder?, secret: KubeSecret?, canPatch: Bool
    ) {
        self.secretName = secretName
        self.namespace = client.namespace
        self.client = client
        self.configuration = configuration
        self.logger = logger
        self.events = events
        self.secret = secret
        self.canPatch = canPatch
    }

    public nonisolated var description: String { "kube:\(namespace)/\(secretName)" }

    /// Opens the Secret `secretName` in the service account's namespace.
    ///
    /// The API server and credentials come from `environment` (``KubeConfiguration``); Events are
    /// recorded on the pod named by `POD_NAME` and `POD_UID` when both are set and the service
    /// account may record them.
    ///
    /// - Throws: ``StateStoreError/Kind/configuration`` for a bad name, unusable credentials, or
    ///   missing permissions (all of them named in one message);
    ///   ``StateStoreError/Kind/io`` when the Secret cannot be read (a missing Secret is not an
    ///   error: the store starts empty and creates it at the first write).
    public static func open(
        secretName: String, environment: [String: String] = ProcessInfo.processInfo.environment, logger: Logger,
        configuration: Configuration = Configuration()
    ) async throws -> SecretStateStore {
        guard KubeName.isSubdomain(secretName) else {
            throw StateStoreError(
                .configuration,
                "kube:\(KubeError.printable(secretName)): not a Secret name (lowercase letters, digits, '-' and '.', at most 253 characters)"
            )
        }
        var kube = try KubeConfiguration.resolve(environment: environment)
        kube.requestTimeout = configuration.requestTimeout
        let client = try KubeClient(configuration: kube)
        let namespace = client.namespace
        let location = "Secret \(namespace)/\(secretName)"

        var pod: KubeEventRecorder.Pod?
        if let name = environment["POD_NAME"], !name.isEmpty, let uid = environment["POD_UID"], !uid.isEmpty {
            pod = .init(name: name.lowercased(), uid: uid.lowercased(), namespace: namespace)
        }
        let permissions = try await checkPermissions(
            client: client, secret: secretName, events: pod != nil, logger: logger, location: location)
        var events: KubeEventRecorder?
        if let pod, permissions.eventsAllowed {
            events = KubeEventRecorder(
                client: client, pod: pod, interval: configuration.updateEventInterval, logger: logger)
        }

        // nil: unknown (no get permission); .some(nil): the Secret does not exist.
        var loaded: KubeSecret??
        if permissions.get {
            do {
                loaded = .some(try await client.getSecret(secretName))
            } catch let error as KubeError where error.kind == .notFound {
                loaded = .some(nil)
            } catch let error as KubeError {
                await events?.record(
                    .loadFailed, message: "Cannot load tsidp's state from Secret \(secretName): \(error.message)")
                await events?.flush()
                let kind: StateStoreError.Kind =
                    error.kind == .forbidden || error.kind == .unauthorized ? .configuration : .io
                throw StateStoreError(kind, "cannot load the state from \(location): \(error)")
            }
        }
        let findings = permissions.findings(secret: secretName, exists: loaded.map { $0 != nil })
        guard findings.required.isEmpty else {
            let message = SecretPermissions.refusal(findings, secret: secretName, namespace: namespace)
            await events?.record(.loadFailed, message: message)
            await events?.flush()
            throw StateStoreError(.configuration, message)
        }
        if !findings.optional.isEmpty {
            logger.warning(
                "the service account lacks optional permissions on \(location): \(findings.optional.joined(separator: "; "))"
            )
        }
        if pod == nil {
            logger.debug("Kubernetes Events are off: POD_NAME and POD_UID are not both set")
        }

        let secret = loaded ?? nil
        let store = SecretStateStore(
            secretName: secretName, client: client, configuration: configuration, logger: logger, events: events,
            secret: secret, canPatch: permissions.patch)
        let keys = secret.map { $0.data.keys.compactMap(SecretKeyMapping.stateKey(for:)).count } ?? 0
        let bytes = secret.map { SecretSize.bytes(of: $0.data) } ?? 0
        if secret == nil {
            logger.info("\(location) does not exist yet; it is created at the first write")
            await events?.record(
                .loaded, message: "Secret \(secretName) does not exist yet; tsidp creates it at its first write")
        } else {
            logger.info(
                "loaded the state from \(location)",
                metadata: ["keys": "\(keys)", "bytes": "\(bytes)", "limit": "\(configuration.sizeLimit)"])
            await events?.record(.loaded, message: "Loaded tsidp's state from Secret \(secretName) (\(keys) keys)")
        }
        await store.noteSize()
        return store
    }

    /// Asks the API server, in parallel, what the service account may do.
    private static func checkPermissions(
        client: KubeClient, secret: String, events: Bool, logger: Logger, location: String
    ) async throws -> SecretPermissions {
        typealias Attributes = SelfSubjectAccessReview.ResourceAttributes
        let namespace = client.namespace
        var questions: [String: Attributes] = [
            "get": Attributes(namespace: namespace, verb: "get", resource: "secrets", name: secret),
            "update": Attributes(namespace: namespace, verb: "update", resource: "secrets", name: secret),
            "patch": Attributes(namespace: namespace, verb: "patch", resource: "secrets", name: secret),
            "create": Attributes(namespace: namespace, verb: "create", resource: "secrets"),
        ]
        if events {
            for verb in ["get", "create", "patch"] {
                questions["events/\(verb)"] = Attributes(namespace: namespace, verb: verb, resource: "events")
            }
        }
        var answers: [String: Bool] = [:]
        do {
            try await withThrowingTaskGroup(of: (String, Bool).self) { group in
                for (label, attributes) in questions {
                    group.addTask { (label, try await client.isAllowed(attributes)) }
                }
                for try await (label, allowed) in group { answers[label] = allowed }
            }
        } catch let error as KubeError where error.kind == .forbidden || error.kind == .notFound {
            // A cluster that does not let accounts review their own access: find out on use.
            logger.warning(
                "cannot check the service account's permissions on \(location) (\(error)); carrying on without the check"
            )
            for label in questions.keys { answers[label] = true }
        } catch let error as KubeError {
            let kind: StateStoreError.Kind = error.kind == .unauthorized ? .configuration : .io
            throw StateStoreError(kind, "cannot check the service account's permissions on \(location): \(error)")
        }
        return SecretPermissions(
            get: answers["get"] ?? false, update: answers["update"] ?? false, patch: answers["patch"] ?? false,
            create: answers["create"] ?? false,
            events: events
                ? (answers["events/get"] ?? false, answers["events/create"] ?? false, answers["events/patch"] ?? false)
                : nil)
    }

    // MARK: StateStore

    public func read(_ key: String) async throws -> Data? {
        let dataKey = try SecretKeyMapping.dataKey(for: key)
        return secret?.data[dataKey]
    }

    /// tsidp's keys only, mapped back; tailscaled's are never listed.
    public func keys() async throws -> [String] {
        (secret?.data.keys.compactMap(SecretKeyMapping.stateKey(for:)) ?? []).sorted()
    }

    public func write(_ entries: [String: Data?]) async throws {
        var changes: [String: Data?] = [:]
        for (key, value) in entries { changes[try SecretKeyMapping.dataKey(for: key)] = value }
        await acquire()
        defer { release() }
        let wrote: Bool
        do {
            wrote = try await apply(changes)
        } catch let error as StateStoreError where error.kind == .full {
            logger.warning("\(error.message)")
            await events?.record(.full, message: error.message)
            throw error
        } catch {
            stale = true
            let reason = (error as? KubeError)?.description ?? "\(error)"
            await events?.record(
                .updateFailed, message: "Cannot update tsidp's state in Secret \(secretName): \(reason)")
            throw StateStoreError(.io, "cannot write the state to \(location): \(reason)")
        }
        if wrote {
            noteSize()
            await events?.record(.updated, message: "Updated tsidp's state in Secret \(secretName)")
        }
    }

    // MARK: Observing

    /// The Secret's size as last seen, in bytes (data keys plus values, tailscaled's included).
    public var storedBytes: Int { secret.map { SecretSize.bytes(of: $0.data) } ?? 0 }

    /// Whether the Secret existed when last seen.
    public var secretExists: Bool { secret != nil }

    /// Delivers every Event recorded so far, including coalesced updates not yet due; call it at
    /// shutdown so that the count is complete. Returns when done.
    public func flushEvents() async {
        await events?.flush()
    }

    /// Returns when no Event delivery is running (tests wait for it instead of sleeping).
    func eventsIdle() async {
        await events?.idle()
    }

    /// Whether Events are recorded.
    public nonisolated var recordsEvents: Bool { events != nil }

    // MARK: Writing

    private var location: String { "Secret \(namespace)/\(secretName)" }

    /// Applies `changes` (data keys) to the Secret; returns whether anything was sent.
    private func apply(_ changes: [String: Data?]) async throws -> Bool {
        if stale { try await reload() }
        var attempts = 0
        var conflicts = 0
        var repatched = false
        while true {
            attempts += 1
            guard let current = secret else {
                let values = changes.compactMapValues { $0 }
                guard !values.isEmpty else { return false }
                try checkSize(values, current: 0)
                do {
                    try await commit(
                        {
                            try await client.createSecret(
                                KubeSecret(name: secretName, namespace: namespace, data: values))
                        },
                        expecting: values)
                    logger.info("created \(location)")
                    return true
                } catch let error as KubeError where error.kind == .conflict && attempts <= 2 {
                    // Another process (tailscaled, another tsidp) created it first: carry on with it.
                    try await reload()
                    continue
                }
            }
            if canPatch {
                let target = SecretSize.applying(changes, to: current.data)
                let patch = SecretPatch.make(current: current.hasDataMap ? current.data : nil, changes: changes)
                guard patch != .none else { return false }
                try checkSize(target, current: SecretSize.bytes(of: current.data))
                do {
                    switch patch {
                    case .json(let operations):
                        try await commit(
                            { try await client.patchSecret(secretName, jsonPatch: operations) }, expecting: target)
                    case .merge(let body):
                        try await commit(
                            { try await client.patchSecret(secretName, mergePatch: body) }, expecting: target)
                    case .none:
                        return false
                    }
                    return true
                } catch let error as KubeError where error.kind == .forbidden || error.kind == .unsupportedMediaType {
                    logger.warning(
                        "patching \(location) was refused (\(error)); writing with read and replace from now on")
                    canPatch = false
                    continue
                } catch let error as KubeError where error.kind == .notFound && attempts <= 2 {
                    secret = nil
                    continue
                } catch let error as KubeError
                    where [.badRequest, .invalid, .conflict].contains(error.kind) && !repatched
                {
                    // The patch no longer fits the Secret (someone else changed it): read it again
                    // and build the patch anew, once.
                    repatched = true
                    try await reload()
                    continue
                }
            }
            // No patch permission: read, change, replace with the resourceVersion just read.
            try await reload()
            guard var fresh = secret else {
                guard attempts <= 2 else {
                    throw KubeError(
                        .notFound, operation: "PUT secrets/\(secretName)", message: "the Secret keeps disappearing")
                }
                continue
            }
            let before = SecretSize.bytes(of: fresh.data)
            let target = SecretSize.applying(changes, to: fresh.data)
            guard target != fresh.data else { return false }
            try checkSize(target, current: before)
            fresh.data = target
            fresh.hasDataMap = true
            do {
                try await commit({ [fresh] in try await client.replaceSecret(fresh) }, expecting: target)
                return true
            } catch let error as KubeError where error.kind == .conflict && conflicts < configuration.conflictRetries {
                conflicts += 1
                logger.debug(
                    "\(location) changed since it was read; reading it again", metadata: ["attempt": "\(conflicts)"])
                continue
            } catch let error as KubeError where error.kind == .notFound && attempts <= 2 {
                secret = nil
                continue
            }
        }
    }

    /// Sends one write and takes the Secret the server answered with as the new memory. A success
    /// whose answer does not decode still happened: memory takes `expecting` and the next write
    /// reads the Secret first.
    private func commit(
        _ request: () async throws -> KubeSecret, expecting data: [String: Data]
    ) async throws {
        do {
            secret = try await request()
        } catch let error as KubeError where error.kind == .malformedAnswer {
            logger.warning(
                "the API server's answer to a write of \(location) does not decode; reading it again before the next write"
            )
            var assumed = secret ?? KubeSecret(name: secretName, namespace: namespace, data: [:])
            assumed.data = data
            assumed.hasDataMap = true
            secret = assumed
            stale = true
        }
    }

    /// Reads the Secret again into memory.
    private func reload() async throws {
        do {
            secret = try await client.getSecret(secretName)
        } catch let error as KubeError where error.kind == .notFound {
            secret = nil
        }
        stale = false
    }

    /// Refuses a write that would take the Secret past ``Configuration/sizeLimit`` (unless it
    /// shrinks it) or past what Kubernetes accepts at all.
    private func checkSize(_ target: [String: Data], current: Int) throws {
        let size = SecretSize.bytes(of: target)
        let limit =
            reserveOpenings > 0
            ? max(configuration.sizeLimit, SecretSize.kubernetesLimit - Self.reserveMargin) : configuration.sizeLimit
        if !SecretSize.admits(size, from: current, limit: limit) {
            throw StateStoreError(
                .full,
                "the state does not fit in \(location): this write would take it to \(size) bytes, over the limit of \(limit) bytes (Kubernetes refuses a Secret over \(SecretSize.kubernetesLimit) bytes, and \(configuration.reserve) are kept free for tailscaled); nothing was written"
            )
        }
    }

    /// Lets writes use the reserve kept for tailscaled, all but 16 KiB of it, until
    /// ``closeReserve()``: removing expired grants from a full Secret is itself a small write
    /// that grows it until the compaction right after shrinks it.
    public func openReserve() {
        reserveOpenings += 1
    }

    /// Ends one ``openReserve()``.
    public func closeReserve() {
        reserveOpenings = max(0, reserveOpenings - 1)
    }

    /// Warns once when the Secret passes 90% of the limit, again after it went back under 80%.
    private func noteSize() {
        let size = storedBytes
        let limit = configuration.sizeLimit
        if size * 10 >= limit * 9 {
            guard !warnedNearFull else { return }
            warnedNearFull = true
            logger.warning(
                "\(location) is nearly full: \(size) of \(limit) bytes; writes that would pass the limit are refused")
        } else if size * 10 < limit * 8 {
            warnedNearFull = false
        }
    }

    private func acquire() async {
        guard writing else {
            writing = true
            return
        }
        await withCheckedContinuation { writeWaiters.append($0) }
    }

    private func release() {
        if writeWaiters.isEmpty {
            writing = false
        } else {
            writeWaiters.removeFirst().resume()
        }
    }
}
