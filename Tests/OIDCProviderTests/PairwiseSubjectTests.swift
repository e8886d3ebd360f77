import AnyJSON
import Foundation
import StateStore
import StateStoreTesting
import Synchronization
import Testing

@testable import OIDCProvider

@Suite("Pairwise subject identifiers (OIDC Core §8.1), opt-in per client")
struct PairwiseSubjectTests {
    static let resource = "https://mcp.example-tailnet.ts.net/mcp"
    static let alice = Fixtures.alice(rules: [
        .object(["users": .array([.string("*")]), "resources": .array([.string(resource)])])
    ])

    /// Registers a client on `setup`'s provider and returns a setup acting as it.
    static func client(
        _ setup: Fixtures.Setup, redirectURIs: [String] = [Fixtures.redirect], subjectType: String = "pairwise",
        sectorIdentifierURI: String = ""
    ) async throws -> Fixtures.Setup {
        var registration = ClientRegistry.Registration(name: "Pairwise App", redirectURIs: redirectURIs)
        registration.subjectType = subjectType
        registration.sectorIdentifierURI = sectorIdentifierURI
        let created = try await setup.provider.clients.register(registration)
        return setup.with(client: created.client, secret: created.secret ?? "")
    }

    static func claims(_ jwt: String) throws -> [String: Any] {
        let data = try #require(Base64URL.decode(jwt.split(separator: ".")[1]))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Signs `identity` in at `setup`'s client and returns every `sub` the client can see.
    static func subjects(
        _ setup: Fixtures.Setup, identity: UserIdentity = alice, resource: String? = nil
    ) async throws -> (idToken: String, userInfo: String, introspection: String, accessToken: String?, refresh: String)
    {
        let extra = resource.map { [("resource", $0)] } ?? []
        let answer = await setup.redeem(try await setup.code(identity: identity, extra: extra), extra: extra)
        #expect(answer.status == 200)
        let body = Fixtures.json(answer.body)
        let access = try #require(body["access_token"] as? String)
        let idToken = try claims(try #require(body["id_token"] as? String))
        let info = Fixtures.json(setup.provider.userInfo(accessToken: access).body)
        let introspection = Fixtures.json(
            await setup.provider.introspect(
                Fixtures.query([("token", access)]), authorization: Fixtures.basic(setup.client.clientID, setup.secret)
            ).body)
        let jwtSubject = resource == nil ? nil : try claims(access)["sub"] as? String
        return (
            try #require(idToken["sub"] as? String), try #require(info["sub"] as? String),
            try #require(introspection["sub"] as? String), jwtSubject,
            try #require(body["refresh_token"] as? String)
        )
    }

    @Test("a pairwise client sees one opaque sub everywhere: ID token, userinfo, introspection, JWT access token")
    func consistent() async throws {
        let setup = try await Self.client(try await Fixtures.provider())
        let seen = try await Self.subjects(setup, resource: Self.resource)
        #expect(seen.idToken != "userid:2001")
        #expect(!seen.idToken.contains("2001"))
        #expect(seen.idToken.count == 43)
        #expect(seen.userInfo == seen.idToken)
        #expect(seen.introspection == seen.idToken)
        #expect(seen.accessToken == seen.idToken)
        // A refresh keeps it.
        let refreshed = Fixtures.json(await setup.refresh(seen.refresh).body)
        #expect(try Self.claims(try #require(refreshed["id_token"] as? String))["sub"] as? String == seen.idToken)
    }

    @Test("clients of one sector share a user's sub; another sector, another user or a public client differ")
    func sectors() async throws {
        let base = try await Fixtures.provider()
        let first = try await Self.client(base, redirectURIs: ["https://app.example.com/one"])
        let sameSector = try await Self.client(base, redirectURIs: ["https://app.example.com/two"])
        let otherSector = try await Self.client(base, redirectURIs: ["https://wiki.example.com/cb"])
        let publicClient = try await Self.client(base, subjectType: "public")
        let alice = try await Self.subjects(first).idToken
        #expect(try await Self.subjects(sameSector).idToken == alice)
        #expect(try await Self.subjects(otherSector).idToken != alice)
        #expect(try await Self.subjects(publicClient).idToken == "userid:2001")
        #expect(try await Self.subjects(first, identity: Fixtures.bob).idToken != alice)
    }

    @Test("subjects survive a restart: the secret is stored once and read back")
    func restart() async throws {
        let store = MemoryStateStore()
        let first = try await KeyRing.load(from: StateWriter(store: store))
        let secret = try #require(try await store.read(KeyRing.pairwiseKey))
        let again = try await KeyRing.load(from: StateWriter(store: store))
        #expect(try await store.read(KeyRing.pairwiseKey) == secret)
        #expect(
            first.pairwiseSubject(userID: 2001, sector: "app.example.com")
                == again.pairwiseSubject(userID: 2001, sector: "app.example.com"))
        // Another installation derives other subjects.
        let elsewhere = try await KeyRing.load(from: StateWriter(store: MemoryStateStore()))
        #expect(
            elsewhere.pairwiseSubject(userID: 2001, sector: "app.example.com")
                != first.pairwiseSubject(userID: 2001, sector: "app.example.com"))
    }

    @Test("a ring from before pairwise subjects gets a secret on its next start; a damaged secret stops start-up")
    func upgradeAndDamage() async throws {
        let store = MemoryStateStore()
        _ = try await KeyRing.load(from: StateWriter(store: store))
        try await store.delete(KeyRing.pairwiseKey)
        let ring = try #require(try await store.read(KeyRing.ringKey))
        _ = try await KeyRing.load(from: StateWriter(store: store))
        #expect(try await store.read(KeyRing.pairwiseKey) != nil)
        #expect(try await store.read(KeyRing.ringKey) == ring)
        try await store.write(KeyRing.pairwiseKey, Data("not base64 !".utf8))
        await #expect(throws: KeyFileError.self) { _ = try await KeyRing.load(from: StateWriter(store: store)) }
        #expect(try await store.read(KeyRing.pairwiseKey) == Data("not base64 !".utf8))
    }

    @Test("a failed or partial first write stores no secret anyone saw; the next start's secret stays")
    func faults() async throws {
        for fault in [FaultInjectingStateStore.WriteFault.fail, .partial(count: 1)] {
            let memory = MemoryStateStore()
            let faulty = FaultInjectingStateStore(wrapping: memory)
            faulty.failNextWrite(fault)
            await #expect(throws: (any Error).self) { _ = try await KeyRing.load(from: StateWriter(store: faulty)) }
            let started = try await KeyRing.load(from: StateWriter(store: faulty))
            let subject = started.pairwiseSubject(userID: 2001, sector: "app.example.com")
            let restarted = try await KeyRing.load(from: StateWriter(store: faulty))
            #expect(restarted.pairwiseSubject(userID: 2001, sector: "app.example.com") == subject)
        }
    }

    @Test("registration: redirect URIs on several hosts need a sector_identifier_uri; subject_type is checked")
    func registrationRules() async throws {
        let setup = try await Fixtures.provider()
        await #expect(throws: OAuthError.self) {
            _ = try await Self.client(
                setup, redirectURIs: ["https://a.example.com/cb", "https://b.example.com/cb"])
        }
        await #expect(throws: OAuthError.self) { _ = try await Self.client(setup, subjectType: "secret") }
        // Several hosts are fine for public clients.
        _ = try await Self.client(
            setup, redirectURIs: ["https://a.example.com/cb", "https://b.example.com/cb"], subjectType: "public")
        // Without a fetcher a sector_identifier_uri cannot be checked and is refused.
        do {
            _ = try await Self.client(setup, sectorIdentifierURI: "https://sector.example.com/uris.json")
            Issue.record("registered without checking the sector document")
        } catch let error as OAuthError {
            #expect(error.code == .invalidClientMetadata)
        }
    }

    @Test("sector_identifier_uri: its host is the sector when its document lists every redirect URI")
    func sectorIdentifierURI() async throws {
        let setup = try await Fixtures.provider()
        let fetched = Fetched()
        await setup.provider.clients.setDocumentFetcher { url in
            fetched.urls.withLock { $0.append(url) }
            switch url {
            case "https://sector.example.com/uris.json":
                return Array(#"["https://a.example.com/cb","https://b.example.com/cb"]"#.utf8)
            case "https://sector.example.com/short.json":
                return Array(#"["https://a.example.com/cb"]"#.utf8)
            case "https://sector.example.com/html":
                return Array("<html>".utf8)
            default:
                throw OAuthError(.serverError, "unreachable")
            }
        }
        let hosts = ["https://a.example.com/cb", "https://b.example.com/cb"]
        let a = try await Self.client(
            setup, redirectURIs: hosts, sectorIdentifierURI: "https://sector.example.com/uris.json")
        #expect(a.client.sector == "sector.example.com")
        let b = try await Self.client(
            setup, redirectURIs: ["https://b.example.com/cb"],
            sectorIdentifierURI: "https://sector.example.com/uris.json")
        #expect(try await Self.subjects(a).idToken == (try await Self.subjects(b).idToken))
        for bad in [
            "https://sector.example.com/short.json", "https://sector.example.com/html",
            "https://sector.example.com/gone", "http://sector.example.com/uris.json",
        ] {
            do {
                _ = try await Self.client(setup, redirectURIs: hosts, sectorIdentifierURI: bad)
                Issue.record("\(bad) accepted")
            } catch let error as OAuthError {
                #expect(error.code == .invalidClientMetadata, "\(bad): \(error)")
            }
        }
        #expect(!fetched.urls.withLock { $0 }.contains("http://sector.example.com/uris.json"))
    }

    @Test("changing a pairwise client's redirect URIs keeps its sector, so nobody's sub changes")
    func stableSector() async throws {
        let setup = try await Self.client(try await Fixtures.provider())
        let before = try await Self.subjects(setup).idToken
        var registration = ClientRegistry.Registration(
            name: "Pairwise App", redirectURIs: ["https://moved.example.com/cb"])
        registration.subjectType = "pairwise"
        let (moved, _) = try await setup.provider.clients.replaceMetadata(
            setup.client.clientID, with: registration, presentedSecret: nil)
        #expect(moved.sector == "app.example.com")
        #expect(try await Self.subjects(setup.with(client: moved, secret: setup.secret)).idToken == before)
    }

    @Test("prompt=none with the pairwise ID token as id_token_hint signs the same user in silently")
    func idTokenHint() async throws {
        let setup = try await Self.client(try await Fixtures.provider())
        let answer = Fixtures.json(await setup.redeem(try await setup.code(identity: Self.alice)).body)
        let idToken = try #require(answer["id_token"] as? String)
        let code = try await setup.code(
            identity: Self.alice, extra: [("prompt", "none"), ("id_token_hint", idToken)])
        #expect(!code.isEmpty)
        let result = await setup.provider.authorize(
            Fixtures.query([
                ("client_id", setup.client.clientID), ("redirect_uri", Fixtures.redirect), ("response_type", "code"),
                ("scope", "openid"), ("prompt", "none"), ("id_token_hint", idToken),
            ])
        ) { () async throws(IdentityFailure) -> UserIdentity in Fixtures.bob }
        #expect(Fixtures.redirectParameters(result)["error"] == "login_required")
    }

    @Test("the client record stores subject_type and sector; public clients store neither")
    func stored() async throws {
        let setup = try await Self.client(try await Fixtures.provider())
        let encoded = String(decoding: try JSONEncoder().encode(setup.client), as: UTF8.self)
        #expect(encoded.contains(#""subject_type":"pairwise""#))
        #expect(encoded.contains(#""sector":"app.example.com""#))
        let decoded = try JSONDecoder().decode(Client.self, from: Data(encoded.utf8))
        #expect(decoded.sector == "app.example.com" && decoded.usesPairwiseSubjects)
        let plain = String(decoding: try JSONEncoder().encode(try await Fixtures.provider().client), as: UTF8.self)
        #expect(!plain.contains("subject_type"))
    }
}

/// URLs a test fetcher was asked for.
final class Fetched: Sendable {
    let urls = Mutex<[String]>([])
}
