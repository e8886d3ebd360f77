import CryptoExtras
import Foundation
import OIDCProvider
import StateStore
import StateStoreTesting
import Testing

@Suite("Go tsidp state files")
struct StateFormatTests {
    @Test("oidc-key.json in the new format keeps its kid and key")
    func newKeyFormat() async throws {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let file = "{\"kid\": 17384921930458401234, \"key\": \(try jsonString(key.pemRepresentation))}"
        let store = MemoryStateStore([KeyRing.stateKey: Data(file.utf8)])
        let ring = try await KeyRing.load(from: StateWriter(store: store))
        #expect(ring.signingKey.kid == "17384921930458401234")
        #expect(ring.signingKey.pkcs1PEM == key.pemRepresentation)
        let jwks = Fixtures.json(ring.jwksDocument)
        let first = try #require((jwks["keys"] as? [[String: Any]])?.first)
        #expect(first["kid"] as? String == "17384921930458401234")
        #expect(first["kty"] as? String == "RSA")
        #expect(first["alg"] as? String == "RS256")
        #expect(first["use"] as? String == "sig")
    }

    @Test("oidc-key.json in the old format (base64url PEM under Key, ID) is imported")
    func oldKeyFormat() async throws {
        let key = try _RSA.Signing.PrivateKey(keySize: .bits2048)
        let wrapped = Base64URL.encode(Data(key.pemRepresentation.utf8))
        let file = "{\"Key\":\"\(wrapped)\",\"ID\":42}"
        let ring = try await KeyRing.load(
            from: StateWriter(store: MemoryStateStore([KeyRing.stateKey: Data(file.utf8)])))
        #expect(ring.signingKey.kid == "42")
        let token = try ring.signingKey.sign(payload: "{\"sub\":\"x\"}")
        #expect(ring.signingKey.verify(token))
    }

    @Test("a damaged key file stops start-up instead of being replaced")
    func damagedKey() async throws {
        for content in [
            "not json", "{\"kid\": 1}", "{\"kid\": 0, \"key\": \"x\"}",
            "{\"kid\": 5, \"key\": \"-----BEGIN RSA PRIVATE KEY-----\\nAAAA\\n-----END RSA PRIVATE KEY-----\\n\"}",
        ] {
            let store = MemoryStateStore([KeyRing.stateKey: Data(content.utf8)])
            await #expect(throws: KeyFileError.self) { try await KeyRing.load(from: StateWriter(store: store)) }
            #expect(try await store.read(KeyRing.stateKey) == Data(content.utf8))
        }
    }

    @Test("a new key is created once and reused")
    func createdOnce() async throws {
        let store = MemoryStateStore()
        let first = try await KeyRing.load(from: StateWriter(store: store))
        let second = try await KeyRing.load(from: StateWriter(store: store))
        #expect(first.signingKey.kid == second.signingKey.kid)
        let text = String(decoding: try #require(try await store.read(KeyRing.stateKey)), as: UTF8.self)
        #expect(text.contains("\"kid\": \(first.signingKey.kid)"))
        #expect(text.contains("BEGIN RSA PRIVATE KEY"))
    }

    @Test("client files: new format, legacy redirect_uri and name, strict-mode file")
    func clientFiles() async throws {
        let newFormat = """
            {"c1": {"client_id": "c1", "client_secret": "s3cret", "client_name": "Grafana",
              "redirect_uris": ["https://grafana.example.com/login/generic_oauth"], "created_at": "2025-08-01T10:00:00.123456789Z"}}
            """
        let store = MemoryStateStore([ClientRegistry.stateKey: Data(newFormat.utf8)])
        let registry = try await ClientRegistry.load(from: StateWriter(store: store))
        let client = try #require(await registry.client("c1"))
        #expect(client.name == "Grafana")
        #expect(client.secretMatches("s3cret"))
        #expect(!client.secretMatches("S3cret"))
        #expect(abs(client.createdAt.timeIntervalSince1970 - 1_754_042_400.123) < 0.01)
        // The client moved into a file of its own, with a digest; the Go file with the plaintext
        // secret is gone, so a deleted client cannot come back from it.
        #expect(try await store.read(ClientRegistry.stateKey) == nil)
        let moved = String(decoding: try #require(try await store.read("tsidp-client-c1.json")), as: UTF8.self)
        #expect(!moved.contains("s3cret"))
        #expect(moved.contains("client_secret_hash"))
        let reloaded = try #require(try await ClientRegistry.load(from: StateWriter(store: store)).client("c1"))
        #expect(reloaded.name == "Grafana" && reloaded.secretMatches("s3cret"))

        let old = """
            {"c2": {"client_id": "c2", "client_secret": "old", "name": "Proxmox", "redirect_uri": "https://pve.example.com:8006"}}
            """
        let legacy = try await ClientRegistry.load(
            from: StateWriter(store: MemoryStateStore([ClientRegistry.legacyStrictKey: Data(old.utf8)])))
        let proxmox = try #require(await legacy.client("c2"))
        #expect(proxmox.name == "Proxmox")
        #expect(proxmox.redirectURIs == ["https://pve.example.com:8006"])
        #expect(proxmox.secretMatches("old"))
    }

    @Test("a damaged client file stops start-up and is left alone")
    func damagedClients() async throws {
        let store = MemoryStateStore([ClientRegistry.stateKey: Data("[1,2".utf8)])
        await #expect(throws: StateStoreError.self) { try await ClientRegistry.load(from: StateWriter(store: store)) }
        #expect(try await store.read(ClientRegistry.stateKey) == Data("[1,2".utf8))
    }

    @Test("a change writes only the client it changes")
    func perClientWrites() async throws {
        let store = FaultInjectingStateStore(wrapping: MemoryStateStore())
        let registry = try await ClientRegistry.load(from: StateWriter(store: store))
        var ids: [String] = []
        for index in 0..<5 {
            ids.append(
                try await registry.register(.init(name: "App \(index)", redirectURIs: ["https://a.example.com/cb"]))
                    .client.clientID)
        }
        _ = try await registry.update(ids[2], name: "Renamed", redirectURIs: ["https://b.example.com/cb"])
        #expect(store.attemptedBatches.last.map { Array($0.keys) } == [ClientRegistry.fileKey(ids[2])])
        try await registry.delete(ids[3])
        let last = try #require(store.attemptedBatches.last)
        #expect(last.count == 1 && last[ClientRegistry.fileKey(ids[3])] == .some(nil))
        #expect(ClientRegistry.fileKey("a/b c").hasPrefix("tsidp-client-h"))
    }

    @Test("registration metadata is bounded; the error names the field")
    func bounded() async throws {
        let registry = try await ClientRegistry.load(from: StateWriter(store: MemoryStateStore()))
        let uri = "https://app.example.com/cb"
        func refusal(_ change: (inout ClientRegistry.Registration) -> Void) async -> String? {
            var registration = ClientRegistry.Registration(name: "App", redirectURIs: [uri])
            change(&registration)
            do {
                _ = try await registry.register(registration)
                return nil
            } catch let error as OAuthError {
                #expect(error.code == .invalidClientMetadata)
                return error.message
            } catch {
                return "\(error)"
            }
        }
        #expect(await refusal { $0.name = String(repeating: "n", count: 50_000) }?.contains("client_name") == true)
        #expect(await refusal { $0.name = "Grafana\nforged log line" }?.contains("client_name") == true)
        #expect(await refusal { $0.redirectURIs = Array(repeating: uri, count: 21) }?.contains("redirect_uris") == true)
        #expect(
            await refusal { $0.redirectURIs = [uri + "?" + String(repeating: "q", count: 2_000)] }?
                .contains("redirect_uris") == true)
        #expect(
            await refusal { $0.contacts = Array(repeating: "a@example.com", count: 11) }?.contains("contacts") == true)
        #expect(
            await refusal { $0.logoURI = "https://" + String(repeating: "l", count: 2_000) }?.contains("logo_uri")
                == true)
        #expect(await refusal { $0.scope = String(repeating: "s ", count: 600) }?.contains("scope") == true)
        #expect(await refusal { $0.name = String(repeating: "n", count: 200) } == nil)
        #expect(await registry.all().count == 1)
    }

    @Test("registration validates redirect URIs and persists before returning")
    func registration() async throws {
        let store = MemoryStateStore()
        let registry = try await ClientRegistry.load(from: StateWriter(store: store))
        for bad in [
            "javascript:alert(1)", "https://app.example.com/cb#frag", "not a uri", "http:///nohost", "data:text/html,x",
        ] {
            await #expect(throws: OAuthError.self) {
                try await registry.register(.init(name: "x", redirectURIs: [bad]))
            }
        }
        let created = try await registry.register(
            .init(name: "App", redirectURIs: ["myapp://callback", "http://127.0.0.1:8000/cb"]))
        #expect(created.secret?.count == 64)
        #expect(created.client.clientID.count == 32)
        let reloaded = try await ClientRegistry.load(from: StateWriter(store: store))
        #expect(await reloaded.client(created.client.clientID)?.secretMatches(created.secret!) == true)
        let regenerated = try await reloaded.regenerateSecret(created.client.clientID)
        #expect(await reloaded.client(created.client.clientID)?.secretMatches(created.secret!) == false)
        #expect(await reloaded.client(created.client.clientID)?.secretMatches(regenerated.secret) == true)
        #expect(try await reloaded.delete(created.client.clientID))
        #expect(try await ClientRegistry.load(from: StateWriter(store: store)).client(created.client.clientID) == nil)
    }

    private func jsonString(_ text: String) throws -> String {
        String(decoding: try JSONEncoder().encode(text), as: UTF8.self)
    }
}
