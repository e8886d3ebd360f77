import CryptoExtras
import Foundation
import OIDCProvider
import StateStore
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
        // The plaintext secret is gone from the rewritten file.
        let rewritten = String(decoding: try #require(try await store.read(ClientRegistry.stateKey)), as: UTF8.self)
        #expect(!rewritten.contains("s3cret"))
        #expect(rewritten.contains("client_secret_hash"))

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
