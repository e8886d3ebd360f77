extension Provider {
    /// ``policy(for:)`` for building claims: rules that try to set a protected claim are
    /// reported (once per node and problem) and then ignored by ``IDToken/extraClaims(_:forUserInfo:)``.
    func claimPolicy(for identity: UserIdentity) throws(OAuthError) -> Grants {
        let grants = try policy(for: identity)
        for (rule, claim) in grants.rulesSettingProtectedClaims(IDToken.protectedClaims) {
            malformedGrants.reportIgnored(
                CapabilityError(
                    "grant value \(rule): extraClaims sets the protected claim \(claim); that rule's claims are ignored"
                ),
                for: identity, logger: logger)
        }
        return grants
    }

    /// The combined tsidp grants of `identity`.
    ///
    /// - Important: A grant that does not parse grants nothing: the request is refused with
    ///   `403 access_denied` naming the bad field, never answered with a guess. The problem is
    ///   logged once per node, not on every request.
    public func policy(for identity: UserIdentity) throws(OAuthError) -> Grants {
        do {
            return Grants(try identity.rules())
        } catch let problem as CapabilityError {
            malformedGrants.report(problem, for: identity, logger: logger)
            throw OAuthError(.accessDenied, "the tsidp grant for this user is malformed: \(problem.message)")
        } catch {
            throw OAuthError(.accessDenied, "the tsidp grant for this user is malformed")
        }
    }
}
