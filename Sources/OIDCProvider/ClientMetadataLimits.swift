/// Bounds on what a client registration may hold, the same for dynamic registration (RFC 7591),
/// the clients API and the admin UI. A registration over a bound is refused with
/// `invalid_client_metadata` naming the field, so that nobody can make the client store, the
/// admin pages or every later write large.
public enum ClientMetadataLimits {
    /// Characters of `client_name`.
    public static let nameLength = 200
    /// Entries of `redirect_uris`; each is at most ``uriLength`` bytes.
    public static let redirectURIs = 20
    /// Entries of `resources`; each is at most ``uriLength`` bytes.
    public static let resources = 20
    /// Bytes of any URI (`redirect_uris`, `resources`, `client_uri`, `logo_uri`).
    public static let uriLength = 2_000
    /// Entries of `contacts`, each at most ``contactLength`` characters.
    public static let contacts = 10
    public static let contactLength = 320
    /// Bytes of `scope`, and how many scopes it may name.
    public static let scopeLength = 1_000
    public static let scopes = 50
    /// Entries of `grant_types` and of `response_types`, each at most ``tokenLength`` characters.
    public static let types = 10
    public static let tokenLength = 100

    /// Throws `invalid_client_metadata` naming the first field over its bound.
    static func check(_ registration: ClientRegistry.Registration) throws {
        func fail(_ field: String, _ rule: String) -> OAuthError {
            OAuthError(.invalidClientMetadata, "\(field) \(rule)")
        }
        guard registration.name.count <= nameLength else {
            throw fail("client_name", "is longer than \(nameLength) characters")
        }
        guard !registration.name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw fail("client_name", "contains control characters")
        }
        guard registration.redirectURIs.count <= redirectURIs else {
            throw fail("redirect_uris", "has more than \(redirectURIs) entries")
        }
        for uri in registration.redirectURIs where uri.utf8.count > uriLength {
            throw fail("redirect_uris", "has an entry longer than \(uriLength) bytes")
        }
        guard registration.resources.count <= resources else {
            throw fail("resources", "has more than \(resources) entries")
        }
        for uri in registration.resources where uri.utf8.count > uriLength {
            throw fail("resources", "has an entry longer than \(uriLength) bytes")
        }
        guard registration.postLogoutRedirectURIs.count <= redirectURIs else {
            throw fail("post_logout_redirect_uris", "has more than \(redirectURIs) entries")
        }
        for uri in registration.postLogoutRedirectURIs where uri.utf8.count > uriLength {
            throw fail("post_logout_redirect_uris", "has an entry longer than \(uriLength) bytes")
        }
        guard registration.clientURI.utf8.count <= uriLength else {
            throw fail("client_uri", "is longer than \(uriLength) bytes")
        }
        guard registration.sectorIdentifierURI.utf8.count <= uriLength else {
            throw fail("sector_identifier_uri", "is longer than \(uriLength) bytes")
        }
        guard registration.subjectType.count <= tokenLength else {
            throw fail("subject_type", "is longer than \(tokenLength) characters")
        }
        guard registration.logoURI.utf8.count <= uriLength else {
            throw fail("logo_uri", "is longer than \(uriLength) bytes")
        }
        guard registration.contacts.count <= contacts else {
            throw fail("contacts", "has more than \(contacts) entries")
        }
        for contact in registration.contacts where contact.count > contactLength {
            throw fail("contacts", "has an entry longer than \(contactLength) characters")
        }
        guard registration.scope.utf8.count <= scopeLength, Scope.parse(registration.scope).count <= scopes else {
            throw fail("scope", "is longer than \(scopeLength) bytes or names more than \(scopes) scopes")
        }
        guard registration.grantTypes.count <= types, registration.grantTypes.allSatisfy({ $0.count <= tokenLength })
        else {
            throw fail("grant_types", "has more than \(types) entries or an entry longer than \(tokenLength)")
        }
        guard registration.responseTypes.count <= types,
            registration.responseTypes.allSatisfy({ $0.count <= tokenLength })
        else {
            throw fail("response_types", "has more than \(types) entries or an entry longer than \(tokenLength)")
        }
        guard registration.applicationType.count <= tokenLength else {
            throw fail("application_type", "is longer than \(tokenLength) characters")
        }
    }
}
