import AnyJSON
import Foundation
import Logging
import StateStoreTesting
import Testing

@testable import StateStore

enum KubeTestLogger {
    /// A logger that drops everything.
    static let quiet = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
}

/// The Secret store against the stand-in API server: what it sends, what it leaves alone, and
/// what it does when the server refuses, fails or goes away.
@Suite("Kubernetes Secret store")
struct SecretStateStoreTests {
    static let name = "tsidp-0"
    static let pod = ["POD_NAME": "tsidp-0", "POD_UID": "6f1c2e7a-0000-4bbb-9ccc-1234567890ab"]

    static func open(
        _ server: KubeAPIServerStandIn, _ extra: [String: String] = [:], logger: Logger = KubeTestLogger.quiet,
        configuration: SecretStateStore.Configuration = .init()
    ) async throws -> SecretStateStore {
        try await SecretStateStore.open(
            secretName: name, environment: server.environment(extra), logger: logger, configuration: configuration)
    }

    /// A client acting as tailscaled, which shares the Secret.
    static func tailscaled(_ server: KubeAPIServerStandIn) throws -> KubeClient {
        try KubeClient(configuration: KubeConfiguration.resolve(environment: server.environment()))
    }

    static func writes(_ requests: [KubeAPIServerStandIn.LoggedRequest]) -> [String] {
        requests.filter { $0.path.contains("/secrets") && $0.method != "GET" }.map { "\($0.method) \($0.status ?? 0)" }
    }

    @Test("a missing Secret starts empty, is created by the first write, and patched after that")
    func createdAtFirstWrite() async throws {
        try await KubeAPIServerStandIn.with { server in
            let store = try await Self.open(server)
            #expect(store.description == "kube:default/tsidp-0")
            #expect(try await store.keys().isEmpty)
            #expect(await store.secretExists == false)
            #expect(try await server.secretData(Self.name) == nil)
            _ = try await server.requests(clear: true)

            try await store.write(["oidc-key.json": Data("k1".utf8), "tsidp-keys.json": Data("ring".utf8)])
            #expect(
                try await server.secretData(Self.name)
                    == ["tsidp--oidc-key.json": Data("k1".utf8), "tsidp-keys.json": Data("ring".utf8)])
            try await store.write("oidc-key.json", Data("k2".utf8))
            let requests = try await server.requests()
            #expect(Self.writes(requests) == ["POST 201", "PATCH 200"], "\(requests)")
            #expect(requests.last?.content_type == "application/json-patch+json")
            #expect(try await store.read("oidc-key.json") == Data("k2".utf8))
            #expect(try await store.keys() == ["oidc-key.json", "tsidp-keys.json"])
        }
    }

    @Test("tailscaled's keys in the Secret are kept byte for byte and never listed, even when it writes meanwhile")
    func tailscaledKeysUntouched() async throws {
        try await KubeAPIServerStandIn.with { server in
            let tailscaled = try Self.tailscaled(server)
            let theirs = [
                "_machinekey": Data("privkey:f00".utf8), "_profiles": Data(#"{"a1b2":{}}"#.utf8),
                "profile-a1b2": Data(#"{"ControlURL":"x"}"#.utf8), "node.example.ts.net.crt": Data("PEM".utf8),
            ]
            _ = try await tailscaled.createSecret(KubeSecret(name: Self.name, namespace: "default", data: theirs))
            let store = try await Self.open(server)
            #expect(try await store.keys().isEmpty)
            #expect(try await store.read("_machinekey") == nil)

            try await store.write(["oidc-key.json": Data("k".utf8), "_machinekey": Data("ours".utf8)])
            // tailscaled writes its own key after tsidp last read the Secret.
            _ = try await tailscaled.patchSecret(
                Self.name,
                jsonPatch: [.add("/data/_current-profile", .string(Data("profile-a1b2".utf8).base64EncodedString()))])
            try await store.write(["oidc-key.json": nil, "tsidp-keys.json": Data("ring".utf8)])

            var expected = theirs
            expected["_current-profile"] = Data("profile-a1b2".utf8)
            expected["tsidp--_machinekey"] = Data("ours".utf8)
            expected["tsidp-keys.json"] = Data("ring".utf8)
            #expect(try await server.secretData(Self.name) == expected)
            #expect(try await store.keys() == ["_machinekey", "tsidp-keys.json"])
            #expect(try await store.read("_machinekey") == Data("ours".utf8))
        }
    }

    @Test("a reserved tsidp-- key is refused before anything is sent; odd data keys are not tsidp's")
    func keyMapping() async throws {
        try await KubeAPIServerStandIn.with { server in
            _ = try await Self.tailscaled(server).createSecret(
                KubeSecret(
                    name: Self.name, namespace: "default",
                    data: ["tsidp--tsidp-x": Data("?".utf8), "tsidp--a": Data("1".utf8), "tsidp-b": Data("2".utf8)]))
            let store = try await Self.open(server)
            #expect(try await store.keys() == ["a", "tsidp-b"])
            _ = try await server.requests(clear: true)
            await #expect(throws: StateStoreError.self) { try await store.write("tsidp--a", Data("x".utf8)) }
            await #expect(throws: StateStoreError.self) { try await store.read("tsidp--a") }
            #expect(try await server.requests().isEmpty)
        }
    }

    @Test("every missing permission is named in one refusal, the optional ones marked")
    func missingPermissions() async throws {
        try await KubeAPIServerStandIn.with { server in
            try await server.configure(rbac: [
                "secrets/get": false, "secrets/patch": false, "secrets/update": false, "secrets/create": false,
                "events/patch": false,
            ])
            do {
                _ = try await Self.open(server, Self.pod)
                Issue.record("open should fail")
            } catch let error as StateStoreError {
                #expect(error.kind == .configuration)
                for phrase in [
                    "get on secrets \"tsidp-0\"", "patch and update on secrets \"tsidp-0\"", "create on secrets",
                    "optional: patch on events",
                ] {
                    #expect(error.message.contains(phrase), "\(phrase) in \(error.message)")
                }
            }
        }
    }

    @Test("only optional permissions missing: a warning names them and the store opens")
    func optionalPermissions() async throws {
        try await KubeAPIServerStandIn.with { server in
            _ = try await Self.tailscaled(server).createSecret(
                KubeSecret(name: Self.name, namespace: "default", data: [:]))
            try await server.configure(rbac: ["secrets/patch": false, "secrets/create": false, "events/get": false])
            let log = LogCapture()
            let store = try await Self.open(server, Self.pod, logger: log.logger)
            #expect(!store.recordsEvents)
            let warnings = log.lines.filter { $0.hasPrefix("warning") }
            #expect(warnings.count == 1, "\(log.lines)")
            for phrase in ["patch on secrets", "create on secrets", "get on events"] {
                #expect(warnings.first?.contains(phrase) == true, "\(phrase) in \(warnings)")
            }
        }
    }

    @Test("patch not allowed: GET then PUT with resourceVersion, a 409 Conflict read again and retried")
    func replaceWithConflict() async throws {
        try await KubeAPIServerStandIn.with { server in
            try await server.configure(rbac: ["secrets/patch": false])
            let store = try await Self.open(server)
            try await store.write("a", Data("1".utf8))
            try await server.configure(faults: [.init(method: "PUT", path: "/secrets/", status: 409)])
            _ = try await server.requests(clear: true)
            try await store.write(["a": nil, "b": Data("2".utf8)])
            let requests = try await server.requests()
            #expect(
                requests.map(\.description) == [
                    "GET /api/v1/namespaces/default/secrets/tsidp-0 200",
                    "PUT /api/v1/namespaces/default/secrets/tsidp-0 409",
                    "GET /api/v1/namespaces/default/secrets/tsidp-0 200",
                    "PUT /api/v1/namespaces/default/secrets/tsidp-0 200",
                ])
            let put = try #require(requests.last?.body)
            #expect(put.contains(#""resourceVersion""#))
            #expect(try await server.secretData(Self.name) == ["tsidp--b": Data("2".utf8)])
            #expect(try await store.keys() == ["b"])
        }
    }

    @Test("a 403 on PATCH at run time switches to GET and PUT for good")
    func patchRefusedLater() async throws {
        try await KubeAPIServerStandIn.with { server in
            let store = try await Self.open(server)
            try await store.write("a", Data("1".utf8))
            try await server.configure(faults: [.init(method: "PATCH", path: "/secrets/", status: 403)])
            _ = try await server.requests(clear: true)
            try await store.write("a", Data("2".utf8))
            try await store.write("b", Data("3".utf8))
            #expect(Self.writes(try await server.requests()) == ["PATCH 403", "PUT 200", "PUT 200"])
            #expect(try await server.secretData(Self.name) == ["tsidp--a": Data("2".utf8), "tsidp--b": Data("3".utf8)])
        }
    }

    @Test("two stores racing to create the Secret: the second gets 409, reads it and patches")
    func createRace() async throws {
        try await KubeAPIServerStandIn.with { server in
            let first = try await Self.open(server)
            let second = try await Self.open(server)
            try await first.write("a", Data("1".utf8))
            _ = try await server.requests(clear: true)
            try await second.write("b", Data("2".utf8))
            #expect(Self.writes(try await server.requests()) == ["POST 409", "PATCH 200"])
            #expect(try await server.secretData(Self.name) == ["tsidp--a": Data("1".utf8), "tsidp--b": Data("2".utf8)])
            #expect(try await second.keys() == ["a", "b"])
        }
    }

    @Test("both racing at once: each write lands")
    func createRaceConcurrent() async throws {
        try await KubeAPIServerStandIn.with { server in
            let first = try await Self.open(server)
            let second = try await Self.open(server)
            async let one: Void = first.write("a", Data("1".utf8))
            async let two: Void = second.write("b", Data("2".utf8))
            _ = try await (one, two)
            #expect(try await server.secretData(Self.name) == ["tsidp--a": Data("1".utf8), "tsidp--b": Data("2".utf8)])
        }
    }

    @Test("a 500 and a dropped connection mid-write: the write throws, memory and Secret unchanged, the next one lands")
    func failedWrites() async throws {
        try await KubeAPIServerStandIn.with { server in
            let store = try await Self.open(server)
            try await store.write(["a": Data("1".utf8), "b": Data("2".utf8)])
            let before = try await server.secretData(Self.name)

            for fault in [
                KubeAPIServerStandIn.Fault(method: "PATCH", path: "/secrets/", status: 500),
                KubeAPIServerStandIn.Fault(method: "PATCH", path: "/secrets/", drop: true),
            ] {
                try await server.configure(faults: [fault])
                do {
                    try await store.write(["a": Data("changed".utf8), "b": nil, "c": Data("3".utf8)])
                    Issue.record("the write should fail")
                } catch let error as StateStoreError {
                    #expect(error.kind == .io)
                    #expect(error.message.contains("Secret default/tsidp-0"))
                    if fault.status == 500 { #expect(error.message.contains("injected fault"), "\(error.message)") }
                }
                #expect(try await store.read("a") == Data("1".utf8))
                #expect(try await store.read("c") == nil)
                #expect(try await store.keys() == ["a", "b"])
                #expect(try await server.secretData(Self.name) == before)
            }
            try await store.write(["a": Data("changed".utf8), "b": nil, "c": Data("3".utf8)])
            #expect(
                try await server.secretData(Self.name) == [
                    "tsidp--a": Data("changed".utf8), "tsidp--c": Data("3".utf8),
                ])
            #expect(try await store.keys() == ["a", "c"])
        }
    }

    @Test("an answer that comes too late: the write throws, and the next write reads the Secret first")
    func timeout() async throws {
        try await KubeAPIServerStandIn.with { server in
            var configuration = SecretStateStore.Configuration()
            // Long enough for every other call on a loaded machine; the delayed patch takes longer.
            configuration.requestTimeout = .seconds(4)
            let store = try await Self.open(server, configuration: configuration)
            try await store.write("a", Data("1".utf8))
            try await server.configure(faults: [.init(method: "PATCH", path: "/secrets/", delay_seconds: 7)])
            await #expect(throws: StateStoreError.self) { try await store.write("b", Data("2".utf8)) }
            #expect(try await store.read("b") == nil)
            // The server applies the late patch after all: wait (bounded) until it says so.
            for _ in 0..<600 {
                if try await server.requests().contains(where: { $0.method == "PATCH" && $0.status == 200 }) { break }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(try await server.secretData(Self.name)?["tsidp--b"] == Data("2".utf8))
            _ = try await server.requests(clear: true)
            // The next write reads the Secret first, so memory learns what the late patch did.
            try await store.write("c", Data("3".utf8))
            let requests = try await server.requests()
            #expect(requests.map(\.method) == ["GET", "PATCH"], "\(requests)")
            #expect(try await store.keys() == ["a", "b", "c"])
            #expect(try await store.read("b") == Data("2".utf8))
        }
    }

    @Test("a rotated token is read again before the next request; no request is refused")
    func tokenRotation() async throws {
        try await KubeAPIServerStandIn.with { server in
            let store = try await Self.open(server)
            try await store.write("a", Data("1".utf8))
            _ = try server.rotateToken()
            _ = try await server.requests(clear: true)
            try await store.write("a", Data("2".utf8))
            #expect(try await server.requests().map(\.status) == [200])
            _ = try server.rotateToken()
            try await store.write("a", Data("3".utf8))
            #expect(try await server.secretData(Self.name) == ["tsidp--a": Data("3".utf8)])
        }
    }

    @Test("a write that would pass the size limit is refused before anything is sent; shrinking still works")
    func sizeLimit() async throws {
        try await KubeAPIServerStandIn.with { server in
            // tailscaled already holds 900 KiB; tsidp may take the Secret to 960 KiB.
            _ = try await Self.tailscaled(server).createSecret(
                KubeSecret(name: Self.name, namespace: "default", data: ["_big": Data(count: 900 * 1024)]))
            let store = try await Self.open(server, Self.pod)
            try await store.write("a", Data(count: 50 * 1024))
            _ = try await server.requests(clear: true)
            do {
                try await store.write("b", Data(count: 20 * 1024))
                Issue.record("the write should be refused")
            } catch let error as StateStoreError {
                #expect(error.kind == .full)
                #expect(
                    error.message.contains("\(SecretStateStore.Configuration().sizeLimit) bytes"), "\(error.message)")
                #expect(error.message.contains("1048576"))
            }
            #expect(Self.writes(try await server.requests()).isEmpty)
            #expect(try await store.keys() == ["a"])
            // Deleting and shrinking go through.
            try await store.write(["a": Data(count: 10)])
            try await store.write(["a": nil])
            #expect(try await server.secretData(Self.name)?.keys.sorted() == ["_big"])
            await store.flushEvents()
            let full = try await server.events().first { $0["reason"]?.stringValue == "TsidpStateFull" }
            #expect(full?["type"]?.stringValue == "Warning")
        }
    }

    @Test("an open reserve admits a write past the limit, up to 16 KiB short of what Kubernetes accepts")
    func reserve() async throws {
        try await KubeAPIServerStandIn.with { server in
            _ = try await Self.tailscaled(server).createSecret(
                KubeSecret(name: Self.name, namespace: "default", data: ["_big": Data(count: 900 * 1024)]))
            let store = try await Self.open(server, Self.pod)
            try await store.write("a", Data(count: 50 * 1024))
            await store.openReserve()
            // 950 KiB + 20 KiB passes the 960 KiB limit but stays 38 KiB under Kubernetes' 1 MiB;
            // 40 KiB more would leave less than 16 KiB.
            try await store.write("b", Data(count: 20 * 1024))
            do {
                try await store.write("c", Data(count: 40 * 1024))
                Issue.record("a write into the last 16 KiB should be refused")
            } catch let error as StateStoreError {
                #expect(error.kind == .full)
            }
            await store.closeReserve()
            do {
                try await store.write("d", Data(count: 10))
                Issue.record("with the reserve closed, growth past the limit is refused again")
            } catch let error as StateStoreError {
                #expect(error.kind == .full)
            }
            #expect(try await store.keys() == ["a", "b"])
        }
    }

    @Test("past what Kubernetes accepts at all, the store refuses even a Secret it finds over its own limit")
    func kubernetesLimit() async throws {
        try await KubeAPIServerStandIn.with { server in
            _ = try await Self.tailscaled(server).createSecret(
                KubeSecret(name: Self.name, namespace: "default", data: ["_big": Data(count: 1000 * 1024)]))
            let store = try await Self.open(server)
            _ = try await server.requests(clear: true)
            await #expect(throws: StateStoreError.self) { try await store.write("a", Data(count: 100 * 1024)) }
            #expect(try await server.requests().isEmpty)
        }
    }

    @Test("Events: loaded, updated (coalesced, counted), failed; an Event failure never fails a write")
    func events() async throws {
        try await KubeAPIServerStandIn.with { server in
            var configuration = SecretStateStore.Configuration()
            configuration.updateEventInterval = .seconds(3600)
            let store = try await Self.open(server, Self.pod, configuration: configuration)
            #expect(store.recordsEvents)
            await store.flushEvents()
            _ = try await server.requests(clear: true)
            func updatedCount() async throws -> JSONValue? {
                try await server.events().first { $0["reason"]?.stringValue == "TsidpStateUpdated" }?["count"]
            }
            func eventWrites() async throws -> [KubeAPIServerStandIn.LoggedRequest] {
                try await server.requests().filter { $0.path.contains("/events") && $0.method != "GET" }
            }
            for i in 1...3 {
                try await store.write("a", Data("\(i)".utf8))
                await store.eventsIdle()
            }
            // The first update is recorded at once; the next two wait for the interval.
            #expect(try await eventWrites().map(\.method) == ["POST"])
            #expect(try await updatedCount() == .int(1))
            await store.flushEvents()
            #expect(try await eventWrites().map(\.method) == ["POST", "PATCH"])
            #expect(try await updatedCount() == .int(3))

            try await server.configure(faults: [.init(method: "PATCH", path: "/secrets/", status: 500)])
            await #expect(throws: StateStoreError.self) { try await store.write("a", Data("4".utf8)) }
            // Events themselves failing: the write is not affected.
            try await server.configure(faults: [.init(method: "*", path: "/events", times: nil, status: 500)])
            try await store.write("a", Data("5".utf8))
            await store.flushEvents()
            try await server.configure(faults: [])
            await store.flushEvents()

            let events = try await server.events()
            func event(_ reason: String) -> [String: JSONValue]? {
                events.first { $0["reason"]?.stringValue == reason }
            }
            let uid = Self.pod["POD_UID"]!
            let loaded = try #require(event("TsidpStateLoaded"))
            #expect(loaded["metadata"]?.objectValue?["name"]?.stringValue == "tsidp-0.\(uid).tsidpstateloaded")
            #expect(loaded["type"]?.stringValue == "Normal")
            #expect(loaded["count"] == .int(1))
            #expect(loaded["source"]?.objectValue?["component"]?.stringValue == "tsidp-state-store")
            let involved = loaded["involvedObject"]?.objectValue
            #expect(involved?["kind"]?.stringValue == "Pod")
            #expect(involved?["name"]?.stringValue == "tsidp-0")
            #expect(involved?["uid"]?.stringValue == uid)
            let updated = try #require(event("TsidpStateUpdated"))
            #expect(updated["metadata"]?.objectValue?["name"]?.stringValue == "tsidp-0.\(uid).tsidpstateupdated")
            // Four successful writes, the last one while Events failed: the count carries them all.
            #expect(updated["count"] == .int(4))
            let failed = try #require(event("TsidpStateUpdateFailed"))
            #expect(failed["type"]?.stringValue == "Warning")
            #expect(failed["message"]?.stringValue?.contains("injected fault") == true)
        }
    }

    @Test("coalesced updates are delivered by themselves once the interval has passed")
    func coalescedDelivery() async throws {
        try await KubeAPIServerStandIn.with { server in
            var configuration = SecretStateStore.Configuration()
            configuration.updateEventInterval = .milliseconds(300)
            let store = try await Self.open(server, Self.pod, configuration: configuration)
            for i in 1...3 { try await store.write("a", Data("\(i)".utf8)) }
            // No flush: wait (bounded) for the recorder's own timer to deliver the rest.
            var count: JSONValue?
            for _ in 0..<200 {
                count = try await server.events().first { $0["reason"]?.stringValue == "TsidpStateUpdated" }?["count"]
                if count == .int(3) { break }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(count == .int(3))
        }
    }

    @Test("a second store on the same Secret sees everything the first wrote")
    func reopen() async throws {
        try await KubeAPIServerStandIn.with { server in
            let first = try await Self.open(server)
            var expected: [String: Data] = [:]
            for i in 0..<10 { expected["tsidp-grants-\(i).json"] = Data("grant \(i)".utf8) }
            expected["oidc-key.json"] = Data("key".utf8)
            expected["empty"] = Data()
            try await first.write(expected.mapValues { $0 })
            try await first.delete("tsidp-grants-3.json")
            expected["tsidp-grants-3.json"] = nil

            let second = try await Self.open(server)
            #expect(try await second.keys() == expected.keys.sorted())
            for (key, value) in expected { #expect(try await second.read(key) == value, "\(key)") }
        }
    }

    @Test("a Secret created empty gets a merge patch, so keys someone else added meanwhile stay")
    func emptySecret() async throws {
        try await KubeAPIServerStandIn.with { server in
            let tailscaled = try Self.tailscaled(server)
            _ = try await tailscaled.createSecret(KubeSecret(name: Self.name, namespace: "default", data: [:]))
            let store = try await Self.open(server)
            _ = try await tailscaled.patchSecret(
                Self.name, mergePatch: .object(["data": .object(["_machinekey": .string("bQ==")])]))
            _ = try await server.requests(clear: true)
            try await store.write("a", Data("1".utf8))
            #expect(try await server.requests().last?.content_type == "application/merge-patch+json")
            #expect(
                try await server.secretData(Self.name) == ["_machinekey": Data("m".utf8), "tsidp--a": Data("1".utf8)])
        }
    }

    @Test("the fault-injecting wrapper works around it: an injected failure sends nothing")
    func faultInjecting() async throws {
        try await KubeAPIServerStandIn.with { server in
            let store = FaultInjectingStateStore(wrapping: try await Self.open(server))
            #expect(store.description == "faulty(kube:default/tsidp-0)")
            store.failNextWrite()
            await #expect(throws: StateStoreError.self) { try await store.write("a", Data("1".utf8)) }
            #expect(try await server.secretData(Self.name) == nil)
            try await store.write("a", Data("2".utf8))
            #expect(try await server.secretData(Self.name) == ["tsidp--a": Data("2".utf8)])
        }
    }

    @Test("bad names and missing service-account files are configuration errors naming the problem")
    func configurationErrors() async throws {
        await #expect(throws: StateStoreError.self) {
            _ = try await SecretStateStore.open(
                secretName: "Not_A_Name", environment: [:], logger: KubeTestLogger.quiet)
        }
        do {
            _ = try await SecretStateStore.open(
                secretName: "tsidp-0",
                environment: [
                    "TSIDP_KUBE_API_URL": "https://127.0.0.1:1", "TSIDP_KUBE_SERVICEACCOUNT_DIR": "/nonexistent/sa",
                ], logger: KubeTestLogger.quiet)
            Issue.record("open should fail")
        } catch let error as StateStoreError {
            #expect(error.kind == .configuration)
            #expect(error.message.contains("/nonexistent/sa/namespace"))
        }
    }

    @Test("the CA file is the only trusted root: another CA's server is refused")
    func onlyTheClusterCA() async throws {
        try await KubeAPIServerStandIn.with { server in
            try await KubeAPIServerStandIn.with { other in
                // The service account of one stand-in, the address of the other.
                let environment = server.environment(["TSIDP_KUBE_API_URL": other.url])
                var configuration = SecretStateStore.Configuration()
                configuration.requestTimeout = .seconds(10)
                do {
                    _ = try await SecretStateStore.open(
                        secretName: Self.name, environment: environment, logger: KubeTestLogger.quiet,
                        configuration: configuration)
                    Issue.record("open should fail")
                } catch let error as StateStoreError {
                    #expect(error.kind == .io)
                    #expect(error.message.contains("CERTIFICATE_VERIFY_FAILED"), "\(error.message)")
                    #expect(try await other.requests().isEmpty)
                }
            }
        }
    }
}
