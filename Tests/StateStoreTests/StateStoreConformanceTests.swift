import Foundation
import StateStore
import StateStoreTesting
import Testing

/// One suite every back end must pass.
enum BackEnd: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory, directory
    /// The fault-injecting wrapper with no fault planned must behave like what it wraps.
    case faultFree = "fault-injecting (no faults)"
    /// A Kubernetes Secret on the stand-in API server.
    case secret = "kube Secret"
    var testDescription: String { rawValue }

    /// Runs `body` with a new, empty store of this kind. The Secret back end needs the stand-in
    /// API server: where it cannot run, `body` is not run and the test records why.
    func withStore(_ body: (any StateStore) async throws -> Void) async throws {
        switch self {
        case .memory: try await body(MemoryStateStore())
        case .directory: try await body(try DirectoryStateStore(path: TemporaryDirectory.make()))
        case .faultFree:
            try await body(FaultInjectingStateStore(wrapping: try DirectoryStateStore(path: TemporaryDirectory.make())))
        case .secret:
            try await KubeAPIServerStandIn.with { server in
                try await body(
                    try await SecretStateStore.open(
                        secretName: "tsidp-0", environment: server.environment(), logger: KubeTestLogger.quiet))
            }
        }
    }
}

enum TemporaryDirectory {
    static func make() -> String {
        NSTemporaryDirectory() + "/tsidp-store-test-\(UUID().uuidString)"
    }
}

@Suite("StateStore conformance")
struct StateStoreConformanceTests {
    @Test("read of a missing key is nil", arguments: BackEnd.allCases)
    func missing(_ backEnd: BackEnd) async throws {
        try await backEnd.withStore { store async throws in
            #expect(try await store.read("absent.json") == nil)
        }
    }

    @Test("write then read returns the bytes; overwrite replaces them", arguments: BackEnd.allCases)
    func roundTrip(_ backEnd: BackEnd) async throws {
        try await backEnd.withStore { store async throws in
            try await store.write("oidc-key.json", Data("one".utf8))
            #expect(try await store.read("oidc-key.json") == Data("one".utf8))
            try await store.write("oidc-key.json", Data("two".utf8))
            #expect(try await store.read("oidc-key.json") == Data("two".utf8))
            try await store.write("empty", Data())
            #expect(try await store.read("empty") == Data())
        }
    }

    @Test("a batch writes and deletes together", arguments: BackEnd.allCases)
    func batch(_ backEnd: BackEnd) async throws {
        try await backEnd.withStore { store async throws in
            try await store.write(["a": Data("1".utf8), "b": Data("2".utf8)])
            try await store.write(["a": .none, "c": Data("3".utf8)])
            #expect(try await store.keys() == ["b", "c"])
            try await store.delete("not-there")
            #expect(try await store.read("a") == nil)
        }
    }

    @Test("invalid keys are refused and nothing is written", arguments: BackEnd.allCases)
    func invalidKeys(_ backEnd: BackEnd) async throws {
        try await backEnd.withStore { store async throws in
            for key in ["", "../escape", "a/b", ".hidden", "sp ace", String(repeating: "k", count: 201)] {
                await #expect(throws: StateStoreError.self, "\(key)") { try await store.write(key, Data("x".utf8)) }
                await #expect(throws: StateStoreError.self, "\(key)") { try await store.read(key) }
            }
            #expect(try await store.keys().isEmpty)
        }
    }

    @Test("concurrent writers each land", arguments: BackEnd.allCases)
    func concurrent(_ backEnd: BackEnd) async throws {
        try await backEnd.withStore { store async throws in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<20 {
                    group.addTask { try await store.write("key-\(i)", Data("\(i)".utf8)) }
                }
                try await group.waitForAll()
            }
            #expect(try await store.keys().count == 20)
            #expect(try await store.read("key-7") == Data("7".utf8))
        }
    }
}

@Suite("Directory back end")
struct DirectoryStateStoreTests {
    @Test("files are 0600, the directory 0700, and no temporary files remain")
    func permissions() async throws {
        let path = TemporaryDirectory.make()
        let store = try DirectoryStateStore(path: path)
        try await store.write("oidc-key.json", Data("secret".utf8))
        let fileMode =
            try FileManager.default.attributesOfItem(atPath: path + "/oidc-key.json")[.posixPermissions] as? Int
        let dirMode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(fileMode == 0o600)
        #expect(dirMode == 0o700)
        #expect(try FileManager.default.contentsOfDirectory(atPath: path) == ["oidc-key.json"])
    }

    @Test("an existing directory keeps its mode, a warning names it, and its files are read")
    func existing() async throws {
        let path = TemporaryDirectory.make()
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        try Data("{}".utf8).write(to: URL(fileURLWithPath: path + "/oidc-funnel-clients.json"))
        let warnings = LogCapture()
        let store = try DirectoryStateStore(path: path, logger: warnings.logger)
        #expect(try await store.read("oidc-funnel-clients.json") == Data("{}".utf8))
        #expect(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int == 0o755)
        let lines = warnings.lines
        let shown = URL(fileURLWithPath: path).standardizedFileURL.path
        #expect(lines.count == 1)
        #expect(lines.first?.hasPrefix("warning ") == true)
        #expect(lines.first?.contains("\(shown) has mode 0755") == true, "\(lines)")
        #expect(lines.first?.contains("chmod 700 \(shown)") == true, "\(lines)")
    }

    @Test("a path that is a file is a configuration error")
    func notADirectory() throws {
        let path = TemporaryDirectory.make()
        try Data().write(to: URL(fileURLWithPath: path))
        #expect(throws: StateStoreError.self) { try DirectoryStateStore(path: path) }
    }

    @Test("a failed write leaves the previous content intact")
    func failedWriteKeepsOld() async throws {
        let path = TemporaryDirectory.make()
        let store = try DirectoryStateStore(path: path)
        try await store.write("clients.json", Data("old".utf8))
        // A directory in the way of the rename makes the write fail after the temp file exists.
        try FileManager.default.createDirectory(atPath: path + "/blocked", withIntermediateDirectories: false)
        try Data("inner".utf8).write(to: URL(fileURLWithPath: path + "/blocked/x"))
        await #expect(throws: StateStoreError.self) { try await store.write("blocked", Data("new".utf8)) }
        #expect(try await store.read("clients.json") == Data("old".utf8))
        #expect(try FileManager.default.contentsOfDirectory(atPath: path).sorted() == ["blocked", "clients.json"])
    }

    @Test("temporary files a crash left behind are removed when the directory is opened")
    func leftoversRemoved() async throws {
        let path = TemporaryDirectory.make()
        let store = try DirectoryStateStore(path: path)
        try await store.write("tsidp-grants-01.json", Data("{}".utf8))
        try Data("half".utf8).write(to: URL(fileURLWithPath: path + "/.tsidp-grants-01.json.tmp-12345"))
        _ = try DirectoryStateStore(path: path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: path) == ["tsidp-grants-01.json"])
    }
}

@Suite("Fault-injecting store")
struct FaultInjectingStateStoreTests {
    @Test("a planned failure fails that write only, and writes nothing of it")
    func plannedFailure() async throws {
        let inner = MemoryStateStore()
        let store = FaultInjectingStateStore(wrapping: inner)
        store.failWrite(2)
        try await store.write("a", Data("1".utf8))
        await #expect(throws: StateStoreError.self) { try await store.write("b", Data("2".utf8)) }
        try await store.write("c", Data("3".utf8))
        #expect(try await inner.keys() == ["a", "c"])
        #expect(store.writeCount == 3)
    }

    @Test("a torn batch applies the first entries in key order, then fails")
    func tornBatch() async throws {
        let inner = MemoryStateStore(["z": Data("old".utf8)])
        let store = FaultInjectingStateStore(wrapping: inner)
        store.failNextWrite(.partial(count: 2))
        await #expect(throws: StateStoreError.self) {
            try await store.write(["b": Data("2".utf8), "a": Data("1".utf8), "c": Data("3".utf8), "z": .none])
        }
        #expect(try await inner.keys() == ["a", "b", "z"])
    }

    @Test("failing deletes, reads and listings")
    func otherFaults() async throws {
        let store = FaultInjectingStateStore(wrapping: MemoryStateStore(["a": Data("1".utf8)]))
        store.failDeletes = true
        await #expect(throws: StateStoreError.self) { try await store.delete("a") }
        try await store.write("b", Data("2".utf8))
        store.failReads = ["a"]
        await #expect(throws: StateStoreError.self) { try await store.read("a") }
        #expect(try await store.read("b") == Data("2".utf8))
        store.failListing = true
        await #expect(throws: StateStoreError.self) { try await store.keys() }
    }
}
