import AnyJSON
import Foundation
import Testing

@testable import StateStore

@Suite("Kubernetes wire: Status, patches, key mapping, size, Event names")
struct KubeWireTests {
    @Test("a Status body is decoded and its code decides the kind, message kept")
    func statusDecoding() throws {
        let body = #"""
            {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"secrets \"tsidp-0\" is forbidden: User \"system:serviceaccount:default:tsidp\" cannot patch resource \"secrets\"","reason":"Forbidden","details":{"name":"tsidp-0","kind":"secrets"},"code":403}
            """#
        // The HTTP status line says 500; the body's code wins.
        let status = KubeStatus.decodeError(httpStatus: 500, body: Array(body.utf8))
        #expect(status.code == 403)
        #expect(status.reason == "Forbidden")
        let error = KubeError(operation: "PATCH secrets/tsidp-0", status: status)
        #expect(error.kind == .forbidden)
        #expect(error.message.hasPrefix("secrets \"tsidp-0\" is forbidden"))
        #expect(error.description.contains("PATCH secrets/tsidp-0: 403 secrets"))
        #expect(!error.outcomeUnknown)
    }

    @Test("an error body that is not a Status keeps the HTTP status and the start of the body")
    func nonStatusBody() {
        let status = KubeStatus.decodeError(httpStatus: 502, body: Array("<html>Bad Gateway</html>".utf8))
        #expect(status.code == 502)
        #expect(status.message == "HTTP status 502: <html>Bad Gateway</html>")
        #expect(KubeError(operation: "GET secrets/x", status: status).outcomeUnknown)
        let empty = KubeStatus.decodeError(httpStatus: 404, body: [])
        #expect(empty.code == 404)
        let noCode = KubeStatus.decodeError(httpStatus: 409, body: Array(#"{"kind":"Status","message":"m"}"#.utf8))
        #expect(noCode.code == 409 && noCode.message == "m")
    }

    @Test(
        "status codes map to kinds",
        arguments: [
            (400, KubeError.Kind.badRequest), (401, .unauthorized), (403, .forbidden), (404, .notFound),
            (409, .conflict), (415, .unsupportedMediaType), (422, .invalid), (500, .server), (503, .server),
            (504, .server), (429, .other),
        ])
    func kinds(_ code: Int, _ kind: KubeError.Kind) {
        #expect(KubeError.Kind(code: code) == kind)
    }

    @Test("messages from the server cannot forge log lines")
    func printable() {
        let error = KubeError(.other, operation: "GET secrets/x", message: "one\ntwo\u{1b}[31m")
        #expect(error.message == "one\\ntwo\\u001b[31m")
        #expect(KubeError.printable(String(repeating: "a", count: 600)).count == 501)
    }

    @Test("a JSON patch adds new and changed values, removes only present keys, skips the rest, in key order")
    func jsonPatch() throws {
        let current = ["tsidp--a": Data("1".utf8), "tsidp--b": Data("2".utf8), "_machinekey": Data("m".utf8)]
        let patch = SecretPatch.make(
            current: current,
            changes: [
                "tsidp--c": Data("3".utf8), "tsidp--a": Data("1".utf8), "tsidp--b": nil, "tsidp--gone": nil,
                "tsidp-keys.json": Data("k".utf8),
            ])
        guard case .json(let operations) = patch else {
            Issue.record("expected a JSON patch, got \(patch)")
            return
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = String(decoding: try encoder.encode(operations), as: UTF8.self)
        #expect(
            text
                == #"[{"op":"remove","path":"/data/tsidp--b"},{"op":"add","path":"/data/tsidp--c","value":"Mw=="},{"op":"add","path":"/data/tsidp-keys.json","value":"aw=="}]"#
        )
    }

    @Test("a batch that changes nothing is no patch at all")
    func noPatch() {
        #expect(SecretPatch.make(current: ["tsidp--a": Data("1".utf8)], changes: ["tsidp--a": Data("1".utf8)]) == .none)
        #expect(SecretPatch.make(current: [:], changes: ["tsidp--a": nil]) == .none)
        #expect(SecretPatch.make(current: nil, changes: ["tsidp--a": nil]) == .none)
    }

    @Test("a Secret without a data map gets a merge patch of its values only")
    func mergePatch() {
        let patch = SecretPatch.make(current: nil, changes: ["tsidp--a": Data("1".utf8), "tsidp--b": nil])
        #expect(patch == .merge(.object(["data": .object(["tsidp--a": .string("MQ==")])])))
    }

    @Test("JSON pointers escape ~ and /")
    func pointer() {
        #expect(JSONPatchOperation.pointer("data", "a/b~c") == "/data/a~1b~0c")
    }

    @Test(
        "state keys map to data keys and back",
        arguments: [
            ("oidc-key.json", "tsidp--oidc-key.json"), ("tsidp-keys.json", "tsidp-keys.json"),
            ("tsidp-grants-00.json", "tsidp-grants-00.json"), ("tsidp-", "tsidp-"), ("tsidp", "tsidp--tsidp"),
            ("tsidpx", "tsidp--tsidpx"), ("_machinekey", "tsidp--_machinekey"), ("a", "tsidp--a"),
        ])
    func mapping(_ key: String, _ dataKey: String) throws {
        #expect(try SecretKeyMapping.dataKey(for: key) == dataKey)
        #expect(SecretKeyMapping.stateKey(for: dataKey) == key)
    }

    @Test("keys starting with tsidp-- and invalid keys are refused")
    func mappingRefusals() {
        for key in ["tsidp--x", "tsidp--", "", "a/b", ".hidden", String(repeating: "k", count: 201)] {
            #expect(throws: StateStoreError.self, "\(key)") { try SecretKeyMapping.dataKey(for: key) }
        }
        #expect((try? SecretKeyMapping.dataKey(for: "tsidp--x")) == nil)
        do {
            _ = try SecretKeyMapping.dataKey(for: "tsidp--x")
        } catch let error as StateStoreError {
            #expect(error.kind == .invalidKey)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("data keys that are not tsidp's are never taken for state keys")
    func foreignDataKeys() {
        for dataKey in [
            "_machinekey", "_profiles", "_current-profile", "profile-a1b2", "node.example.ts.net.crt",
            "acme-account.key.pem", "tsidp--", "tsidp--tsidp-x", "tsidp--.hidden", "tsidp--a_b c",
        ] {
            #expect(SecretKeyMapping.stateKey(for: dataKey) == nil, "\(dataKey)")
        }
    }

    @Test("size counts data keys and values; a write may not grow the Secret past the limit")
    func size() {
        let data = ["tsidp--a": Data(count: 10), "_machinekey": Data(count: 5)]
        #expect(SecretSize.bytes(of: data) == 8 + 10 + 11 + 5)
        #expect(
            SecretSize.applying(["tsidp--a": nil, "b": Data(count: 1)], to: data) == [
                "_machinekey": Data(count: 5), "b": Data(count: 1),
            ])
        #expect(SecretSize.admits(100, from: 0, limit: 100))
        #expect(!SecretSize.admits(101, from: 0, limit: 100))
        // Over the limit already: shrinking or keeping the size is fine, growing is not.
        #expect(SecretSize.admits(150, from: 160, limit: 100))
        #expect(SecretSize.admits(160, from: 160, limit: 100))
        #expect(!SecretSize.admits(161, from: 160, limit: 100))
        // Never past what Kubernetes accepts.
        #expect(SecretSize.admits(1 << 20, from: 1 << 20, limit: 2 << 20))
        #expect(!SecretSize.admits((1 << 20) + 1, from: 2 << 20, limit: 2 << 20))
        #expect(SecretStateStore.Configuration().sizeLimit == (1 << 20) - 64 * 1024)
    }

    @Test("Events are named <POD_NAME>.<POD_UID>.<lowercased reason>; warnings are Warning")
    func eventNames() {
        let pod = KubeEventRecorder.Pod(name: "tsidp-0", uid: "6f1c2e7a-0000-4bbb-9ccc-1234567890ab", namespace: "idp")
        #expect(
            KubeEventRecorder.eventName(pod: pod, reason: .updated)
                == "tsidp-0.6f1c2e7a-0000-4bbb-9ccc-1234567890ab.tsidpstateupdated")
        #expect(
            KubeEventRecorder.Reason.allCases.map(\.rawValue) == [
                "TsidpStateLoaded", "TsidpStateLoadFailed", "TsidpStateUpdated", "TsidpStateUpdateFailed",
                "TsidpStateFull",
            ])
        #expect(KubeEventRecorder.Reason.allCases.filter { $0.type == "Normal" } == [.loaded, .updated])
        #expect(KubeEventRecorder.Reason.allCases.filter(\.isCoalesced) == [.updated])
    }

    @Test("missing permissions: required ones and optional ones, all named")
    func permissionFindings() {
        let none = SecretPermissions(
            get: false, update: false, patch: false, create: false, events: (get: true, create: false, patch: false))
        let findings = none.findings(secret: "tsidp-0", exists: nil)
        #expect(findings.required.count == 3)
        let message = SecretPermissions.refusal(findings, secret: "tsidp-0", namespace: "idp")
        for phrase in [
            "Secret idp/tsidp-0", "get on secrets \"tsidp-0\"", "patch and update on secrets \"tsidp-0\"",
            "create on secrets (needed if the Secret does not exist yet)", "optional: create, patch on events",
        ] {
            #expect(message.contains(phrase), "\(phrase) in \(message)")
        }

        let patchOnly = SecretPermissions(get: true, update: false, patch: true, create: true)
        #expect(patchOnly.findings(secret: "s", exists: true).required.isEmpty)
        let updateOnly = SecretPermissions(get: true, update: true, patch: false, create: false)
        let existing = updateOnly.findings(secret: "s", exists: true)
        #expect(existing.required.isEmpty)
        #expect(existing.optional.count == 2)
        #expect(
            updateOnly.findings(secret: "s", exists: false).required == [
                "create on secrets (the Secret does not exist yet)"
            ])
        #expect(!updateOnly.eventsAllowed)
    }

    @Test("configuration: overrides, then the in-cluster variables, then kubernetes.default.svc")
    func configuration() throws {
        let overridden = try KubeConfiguration.resolve(environment: [
            "TSIDP_KUBE_API_URL": "https://127.0.0.1:6443/", "TSIDP_KUBE_SERVICEACCOUNT_DIR": "/tmp/sa",
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        ])
        #expect(overridden.apiURL == "https://127.0.0.1:6443")
        #expect(overridden.serviceAccountDirectory == "/tmp/sa")
        #expect(overridden.requestTimeout == .seconds(10))
        let pod = try KubeConfiguration.resolve(environment: [
            "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
            "KUBERNETES_SERVICE_PORT": "8443",
        ])
        #expect(pod.apiURL == "https://10.96.0.1:443")
        #expect(pod.serviceAccountDirectory == "/var/run/secrets/kubernetes.io/serviceaccount")
        let portOnly = try KubeConfiguration.resolve(environment: [
            "KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443",
        ])
        #expect(portOnly.apiURL == "https://[fd00::1]:6443")
        #expect(try KubeConfiguration.resolve(environment: [:]).apiURL == "https://kubernetes.default.svc")
        #expect(throws: StateStoreError.self) {
            try KubeConfiguration.resolve(environment: ["TSIDP_KUBE_API_URL": "http://127.0.0.1:8080"])
        }
    }

    @Test("a Secret keeps every field it was read with, and its data decodes")
    func secretRoundTrip() throws {
        let json = #"""
            {"kind":"Secret","apiVersion":"v1","metadata":{"name":"tsidp-0","namespace":"default","resourceVersion":"1002","labels":{"app":"tsidp"},"ownerReferences":[{"kind":"StatefulSet","name":"tsidp","uid":"u","apiVersion":"apps/v1"}]},"type":"Opaque","immutable":false,"data":{"_machinekey":"bQ==","tsidp--a":""}}
            """#
        let secret = try JSONDecoder().decode(KubeSecret.self, from: Data(json.utf8))
        #expect(secret.name == "tsidp-0")
        #expect(secret.resourceVersion == "1002")
        #expect(secret.data == ["_machinekey": Data("m".utf8), "tsidp--a": Data()])
        let again = try JSONDecoder().decode(KubeSecret.self, from: try JSONEncoder().encode(secret))
        #expect(again == secret)
        #expect(again.fields["metadata"]?.objectValue?["ownerReferences"] != nil)
        #expect(again.fields["immutable"] == .bool(false))
        let bad = #"{"kind":"Secret","metadata":{"name":"x"},"data":{"k":"not base64!"}}"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(KubeSecret.self, from: Data(bad.utf8)) }
        let empty = try JSONDecoder().decode(KubeSecret.self, from: Data(#"{"metadata":{"name":"x"}}"#.utf8))
        #expect(!empty.hasDataMap && empty.data.isEmpty)
    }

    @Test("the token is read again when the kubelet replaces its file, trimmed, and an empty one is refused")
    func tokenFile() throws {
        let directory = TemporaryDirectory.make()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/token"
        try Data("first\n".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        let token = BearerTokenFile(path: path)
        #expect(try token.current() == "first")
        #expect(!token.reload())
        try Data("second".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        #expect(try token.current() == "second")
        try Data("third".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        #expect(token.reload())
        #expect(try token.current() == "third")
        try Data(" \n".utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        #expect(throws: StateStoreError.self) { try token.current() }
        try FileManager.default.removeItem(atPath: path)
        #expect(throws: StateStoreError.self) { try token.current() }
    }
}
