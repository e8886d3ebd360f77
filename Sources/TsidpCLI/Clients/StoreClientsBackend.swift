import Foundation
import Logging
import OIDCProvider
import StateStore

/// `tsidp clients --dir`: the state directory of a stopped tsidp, changed through the same
/// registry (and the same rules) the server uses.
///
/// - Important: The directory's lock is held from opening to ``close()``: while a server runs on
///   the directory, opening fails, so the command never writes behind a server's back.
final class StoreClientsBackend: ClientsBackend, @unchecked Sendable {
    let store: DirectoryStateStore
    let writer: StateWriter
    let registry: ClientRegistry
    let logger: Logger

    /// Opens `directory` (which must exist: a typo must not create an empty state directory).
    static func open(directory: String, logger: Logger) async throws -> StoreClientsBackend {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue
        else {
            throw ClientsFailure("state directory \(directory) does not exist")
        }
        let store: DirectoryStateStore
        do {
            store = try DirectoryStateStore(path: directory, logger: logger, exclusive: true)
        } catch is DirectoryLock.Busy {
            throw UsageError(
                "a tsidp server is running on \(directory): manage its clients with --server http://127.0.0.1:<its --local-port>, or stop it first"
            )
        } catch let error as StateStoreError {
            throw ClientsFailure(error.message)
        }
        let writer = StateWriter(store: store, logger: logger)
        do {
            let registry = try await ClientRegistry.load(from: writer)
            await registry.setDocumentFetcher(ClientDocumentFetcher.fetch)
            return StoreClientsBackend(store: store, writer: writer, registry: registry, logger: logger)
        } catch let error as StateStoreError {
            throw ClientsFailure(error.message)
        }
    }

    private init(store: DirectoryStateStore, writer: StateWriter, registry: ClientRegistry, logger: Logger) {
        self.store = store
        self.writer = writer
        self.registry = registry
        self.logger = logger
    }

    func close() async {
        await writer.close()
    }

    /// Runs a registry operation, turning its errors into one-line failures.
    private func perform<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as OAuthError {
            throw ClientsFailure(error.message)
        } catch let error as StateStoreError {
            throw ClientsFailure(error.message)
        } catch let error as KeyFileError {
            throw ClientsFailure(error.message)
        }
    }

    private func existing(_ id: String) async throws -> Client {
        guard let client = await registry.client(id) else { throw ClientsFailure("client \(id) not found") }
        return client
    }

    func list() async throws -> [ClientRecord] {
        await registry.all().map { ClientRecord($0) }
    }

    func add(name: String, redirectURIs: [String], resources: [String], isPublic: Bool, pairwise: Bool) async throws
        -> ClientRecord
    {
        var registration = ClientRegistry.Registration(name: name, redirectURIs: redirectURIs)
        registration.resources = resources
        if isPublic { registration.tokenEndpointAuthMethod = "none" }
        if pairwise { registration.subjectType = "pairwise" }
        let created = try await perform { try await registry.register(registration) }
        return ClientRecord(created.client, secret: created.secret)
    }

    func show(_ id: String) async throws -> ClientRecord {
        ClientRecord(try await existing(id))
    }

    func update(_ id: String, name: String?, redirectURIs: [String]?, resources: [String]?) async throws
        -> ClientRecord
    {
        let current = try await existing(id)
        let updated = try await perform {
            try await registry.update(
                id, name: name ?? current.name, redirectURIs: redirectURIs ?? current.redirectURIs,
                resources: resources)
        }
        return ClientRecord(updated)
    }

    func regenerateSecret(_ id: String) async throws -> ClientRecord {
        _ = try await existing(id)
        let result = try await perform { try await registry.regenerateSecret(id) }
        return ClientRecord(result.client, secret: result.secret)
    }

    /// Deletes the client the way the server does: its refresh families, access tokens and
    /// consents are removed from the grant state first, then the client file.
    func delete(_ id: String) async throws {
        _ = try await existing(id)
        try await perform {
            let keys = try await KeyRing.load(from: writer)
            let provider = Provider(
                configuration: ProviderConfiguration(issuer: "http://localhost", idpHost: "localhost"), keys: keys,
                clients: registry, writer: writer, logger: logger)
            try await provider.restoreGrants()
            guard try await provider.deleteClient(id) else { throw ClientsFailure("client \(id) not found") }
        }
    }
}
