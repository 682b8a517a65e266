"""Face video as frame features: ``reader`` (PyAV decoding at a fixed rate), ``face_models``
(the shipped MediaPipe detector and mesh), ``tracking`` (the speaker's face through a clip),
``geometry`` (aligned expression measures, the common form of every landmark source),
``extractor`` (the ``face`` extractor), ``openface`` (OpenFace CSVs), ``expressions`` (fer)."""
